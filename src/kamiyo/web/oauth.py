"""KAMIYO as its own OAuth 2.1 authorization server for ``/mcp`` (the MCP authorization spec).

Served when ``KAMIYO_PUBLIC_URL`` is set (the issuer must be one stable URL: clients compare it
exactly, and tokens name the ``/mcp`` URL as their audience) and no external authorization
server is configured. The SDK's handlers (``mcp.server.auth.handlers``) parse and check every
request; ``oauth_provider.Provider`` keeps the state, ``oauth_consent.Consent`` asks the person.

- ``/.well-known/oauth-authorization-server``: metadata (RFC 8414)
- ``/oauth/authorize``: authorization code with PKCE S256, and the consent page
- ``/oauth/token``: authorization_code and refresh_token grants
- ``/oauth/register``: dynamic client registration (RFC 7591); Client ID Metadata Documents
  need none
- ``/oauth/revoke``: revocation (RFC 7009)

Registration, authorize, token and revocation are rate limited per client address
(``oauth_limits.py``).
"""

import logging
from collections.abc import Awaitable, Callable

from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.handlers.register import RegistrationHandler
from mcp.server.auth.handlers.revoke import RevocationHandler
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.routes import cors_middleware, validate_issuer_url
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.server.transport_security import RequestBodyLimitMiddleware
from mcp.shared.auth import OAuthMetadata
from pydantic import AnyHttpUrl
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import FormData
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp

from kamiyo.config import AuthSettings, Settings, SiteSettings
from kamiyo.web.oauth_clients import ClientDirectory, HashedSecretAuthenticator
from kamiyo.web.oauth_consent import AccountOf, Consent, nobody
from kamiyo.web.oauth_limits import OAuthLimits
from kamiyo.web.oauth_provider import AUTHORIZE_PATH, Provider

log = logging.getLogger(__name__)

METADATA_PATH = "/.well-known/oauth-authorization-server"
TOKEN_PATH, REGISTER_PATH, REVOKE_PATH = "/oauth/token", "/oauth/register", "/oauth/revoke"
MAX_BODY = 64 * 1024  # no OAuth request comes near this; a larger one is refused with 413
CLIENT_AUTH_METHODS = ["none", "client_secret_post", "client_secret_basic"]


def served_issuer(site: SiteSettings, auth: AuthSettings) -> str | None:
    """The issuer when this authorization server is served (see the module), else None."""
    issuer = site.issuer_url
    if issuer is None or auth.authorization_servers:
        return None
    try:
        validate_issuer_url(AnyHttpUrl(issuer))  # https, or http on loopback (RFC 8414 §2)
    except ValueError as exc:
        log.warning("not serving the OAuth authorization server at %s: %s", issuer, exc)
        return None
    return issuer


def metadata(issuer: str) -> OAuthMetadata:
    # Strings, validated by the model: it keeps an empty path empty (RFC 8414 §3.3 compares
    # the issuer exactly), where AnyHttpUrl on its own would add a '/'.
    return OAuthMetadata.model_validate(
        {
            "issuer": issuer,
            "authorization_endpoint": issuer + AUTHORIZE_PATH,
            "token_endpoint": issuer + TOKEN_PATH,
            "registration_endpoint": issuer + REGISTER_PATH,
            "revocation_endpoint": issuer + REVOKE_PATH,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "client_id_metadata_document_supported": True,
            "authorization_response_iss_parameter_supported": True,
        }
    )


class PublicClientRevocation(RevocationHandler):
    """The SDK's revocation endpoint, open to public clients too: its request model requires
    a ``client_secret`` field (None allowed, which a form cannot send), and public clients
    (RFC 7009 §2.1) send none. An empty one is filled in; it proves nothing and is checked
    against nothing (a confidential client's secret is checked by the authenticator)."""

    async def handle(self, request: Request) -> Response:
        form = await request.form()
        if "client_secret" not in form:
            # Starlette keeps the parsed form here; the SDK's handler reads it from there.
            request._form = FormData([*form.multi_items(), ("client_secret", "")])
        return await super().handle(request)


def _api(app: ASGIApp, methods: list[str]) -> ASGIApp:
    """Body-limited, and readable by browser clients (the MCP Inspector runs in one): CORS
    outermost, so a 429 from the rate limit inside is readable too."""
    limited = RequestBodyLimitMiddleware(app, MAX_BODY)
    return CORSMiddleware(limited, allow_origins="*", allow_methods=methods, allow_headers=["*"])


def routes(
    settings: Settings,
    sessions: Callable[[], async_sessionmaker[AsyncSession]],
    *,
    limits: OAuthLimits,
    account_of: AccountOf = nobody,
    login_path: str | None = None,
) -> list[Route]:
    """The authorization server's routes, rate limited by ``limits`` (the caller closes it);
    none when it is not served (see the module)."""
    issuer, resource = served_issuer(settings.site, settings.auth), settings.site.mcp_resource_url
    if issuer is None or resource is None:
        return []
    clients = ClientDirectory(sessions, settings.auth.oauth_allow_loopback_clients)
    provider = Provider(settings, sessions, clients, issuer, resource)
    authenticator = HashedSecretAuthenticator(clients)
    token = TokenHandler(provider, authenticator)
    register = RegistrationHandler(provider, ClientRegistrationOptions(enabled=True))
    revoke = PublicClientRevocation(provider, authenticator)
    consent = Consent(provider, account_of, login_path)
    api = ["POST", "OPTIONS"]

    def limited(endpoint: str, handler: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
        return limits.limited(endpoint, request_response(handler))

    return [
        Route(
            METADATA_PATH,
            cors_middleware(MetadataHandler(metadata(issuer)).handle, ["GET", "OPTIONS"]),
            methods=["GET", "OPTIONS"],
        ),
        Route(
            AUTHORIZE_PATH,
            limits.limited(
                "authorize",
                RequestBodyLimitMiddleware(request_response(consent.endpoint), MAX_BODY),
            ),
            methods=["GET", "POST"],
        ),
        Route(TOKEN_PATH, _api(limited("token", token.handle), api), methods=api),
        Route(REGISTER_PATH, _api(limited("register", register.handle), api), methods=api),
        Route(REVOKE_PATH, _api(limited("revoke", revoke.handle), api), methods=api),
    ]

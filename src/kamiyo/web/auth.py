"""The HTTP transports as an OAuth 2.1 resource server, as the MCP authorization spec asks.

Protected resource metadata (RFC 9728) tells a client what this resource is and which
authorization servers issue tokens for it. ``BearerGuard`` answers a request to an MCP endpoint
with 401 and a ``WWW-Authenticate`` challenge (RFC 6750) pointing at that metadata when the gate
would refuse its credential: clients start their authorization flow on an HTTP 401, not on a
tool error. Anonymous callers pass while the operator allows them (they get the free tier); a
locked tool is still refused inside MCP, as an ``isError`` result. When the credential cannot
be checked (the database is down) it answers 503; those refusals are counted in the outage's
log lines (``kamiyo.outages``) and not metered, since no call has been read at that point.

The challenge's JSON body is what the endpoint's clients read: on the MCP endpoints OAuth's
``{"error", "error_description"}`` (as the SDK's own guard answers), on REST routes the REST
envelope (web/errors.py); the ``WWW-Authenticate`` header is the same on both.

Which endpoints take this server's OAuth tokens (docs/oauth.md, "Where a token works"): only
``/mcp``. Its authorization server issues tokens whose audience is the ``/mcp`` URL (RFC 8707),
and the MCP authorization spec has a resource accept only tokens meant for it, so the guard
refuses such a token on ``/sse`` and REST with a 401 saying where it works, and only the
``/mcp`` metadata document names that authorization server. API keys and operator JWTs
(audience ``KAMIYO_JWT_AUDIENCE``) work everywhere, as do external servers' tokens.

The guard is pure ASGI: Starlette's ``BaseHTTPMiddleware`` would buffer the SSE streams. The
SDK's ``RequireAuthMiddleware`` does not fit: it cannot admit anonymous callers and gives every
failure the same message.
"""

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

import jwt
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from pydantic import AnyHttpUrl
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kamiyo import outages
from kamiyo.access.gate import Gate, Refusal, remember_identity
from kamiyo.config import AuthSettings, ConfigurationError, SiteSettings
from kamiyo.config.sections import MCP_PATH
from kamiyo.web.access_log import logged_path
from kamiyo.web.errors import error_body
from kamiyo.web.oauth import served_issuer

log = logging.getLogger(__name__)

METADATA_PATH = "/.well-known/oauth-protected-resource"
# API keys are under 200 characters and our JWTs at most 4096; anything far longer is not a
# credential, and is refused before the gate hashes it.
MAX_CREDENTIAL_LENGTH = 8192
# RFC 6750 §2.1 b64token: what a bearer credential may contain (API keys and JWTs do).
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# A Host header fit to be echoed into metadata and a header: a name or [IPv6], and a port.
PLAIN_HOST = re.compile(r"(?:[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
# RFC 6750 §3: error_description is printable ASCII without '"' or '\'.
UNQUOTABLE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
MAX_DESCRIPTION = 300
MAX_DRAINED_BODY = 1024 * 1024  # a larger body is not read; the connection is closed on it

Endpoint = Callable[[Request], Awaitable[Response]]


def canonical_url(url: str) -> str:
    """``url`` as pydantic spells it (lower-case host, no default port), without a final '/'."""
    return str(AnyHttpUrl(url)).rstrip("/")


class ResourceServer:
    """Where this resource lives, its metadata documents, and guards for its MCP routes."""

    def __init__(self, site: SiteSettings, auth: AuthSettings, gate: Gate) -> None:
        # Checked at start, so a typo stops the server instead of failing every request.
        try:
            self.public_url = canonical_url(site.public_url) if site.public_url else None
            for server in auth.authorization_servers:
                AnyHttpUrl(server)
        except ValueError:
            raise ConfigurationError(
                "KAMIYO_PUBLIC_URL and KAMIYO_AUTHORIZATION_SERVERS need http(s) URLs, "
                'e.g. https://kamiyo.example.com and ["https://auth.example.com"]'
            ) from None
        # Without an external one, KAMIYO is its own (web/oauth.py), when it serves one.
        own = served_issuer(site, auth)
        self.external_servers = auth.authorization_servers
        self.authorization_servers = auth.authorization_servers or ([own] if own else [])
        # The audience of this server's own OAuth tokens, when they differ from operator JWTs'.
        oauth = site.mcp_resource_url if own else None
        self.oauth_audience = oauth if oauth != auth.jwt_audience else None
        self.gate = gate

    def servers_for(self, resource_path: str) -> list[str]:
        """The authorization servers whose tokens the resource at ``resource_path`` takes:
        external ones everywhere, this server's own on ``/mcp`` only."""
        return self.external_servers or (
            self.authorization_servers if resource_path == MCP_PATH else []
        )

    def misplaced_token(self, credential: str, resource_path: str) -> str | None:
        """Why ``credential`` is refused here: one of this server's OAuth access tokens, for
        ``/mcp``, presented elsewhere (None: it is not one, or this is ``/mcp``). Its claims
        are read unverified, to refuse only: the gate verifies what gets in."""
        if self.oauth_audience is None or resource_path == MCP_PATH:
            return None
        try:
            claims = jwt.decode(credential, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return None  # not a JWT (an API key) or not one of ours: the gate decides
        audience = claims.get("aud") if isinstance(claims, dict) else None
        audiences = audience if isinstance(audience, list) else [audience]
        if self.oauth_audience not in audiences:
            return None
        where = resource_path or "the REST API"
        return (
            f"This OAuth access token is for {self.oauth_audience} (its audience, RFC 8707) and "
            f"works only there; on {where} send an API key."
        )

    def base_url(self, scope: Scope) -> str:
        """The public URL when configured, else the scheme and Host this request came in on."""
        if self.public_url:
            return self.public_url
        scheme = "https" if scope.get("scheme") == "https" else "http"
        host = Headers(scope=scope).get("host", "")
        if PLAIN_HOST.fullmatch(host):
            with suppress(ValueError):
                return canonical_url(f"{scheme}://{host}")
        # No usable Host (HTTP/1.0, or forged): the address we listen on.
        address, port = scope.get("server") or ("localhost", None)
        address = f"[{address}]" if ":" in address else address
        with suppress(ValueError):
            return canonical_url(f"{scheme}://{address}:{port}")
        return f"{scheme}://localhost"  # a Unix socket: no address a client could use

    def metadata_url(self, scope: Scope, resource_path: str) -> str:
        """RFC 9728 §3.1: the well-known segment goes between the host and the resource path."""
        return str(build_resource_metadata_url(AnyHttpUrl(self.base_url(scope) + resource_path)))

    def metadata_routes(self, resource_paths: Sequence[str]) -> list[Route]:
        """A document for the server root and one per resource, each at its RFC 9728 URL.

        A document's ``resource`` is the identifier its URL was formed from (§3.3), so
        ``/.well-known/oauth-protected-resource/mcp`` describes ``<base>/mcp``. CORS lets browser
        clients read them.
        """
        return [
            Route(
                METADATA_PATH + path,
                cors_middleware(self._document(path), ["GET", "OPTIONS"]),
                methods=["GET", "OPTIONS"],
            )
            for path in ("", *resource_paths)
        ]

    def _document(self, resource_path: str) -> Endpoint:
        async def document(request: Request) -> Response:
            # Plain JSON, not the SDK's ProtectedResourceMetadata: that model requires at least
            # one authorization server, and RFC 9728 makes the field optional.
            body: dict[str, object] = {"resource": self.base_url(request.scope) + resource_path}
            if servers := self.servers_for(resource_path):
                body["authorization_servers"] = servers
            body |= {"bearer_methods_supported": ["header"], "resource_name": "KAMIYO"}
            return JSONResponse(body, headers={"Cache-Control": "public, max-age=3600"})

        return document

    def guard(self, routes: Sequence[BaseRoute], resource_path: str) -> list[BaseRoute]:
        """The same routes, each behind a ``BearerGuard`` for the resource at ``resource_path``.

        Wrapping the routes, rather than matching paths, leaves no path that reaches an MCP
        endpoint unguarded; a kind of route this does not know stops the start.
        """
        guarded: list[BaseRoute] = []
        for route in routes:
            if isinstance(route, Route):
                app = BearerGuard(route.app, self, resource_path)
                guarded.append(Route(route.path, app, methods=route.methods, name=route.name))
            elif isinstance(route, Mount):
                app = BearerGuard(route.app, self, resource_path)
                guarded.append(Mount(route.path, app=app, name=route.name))
            else:
                raise TypeError(f"cannot guard {route!r}")
        return guarded


class BearerGuard:
    """Answers 401 before an MCP endpoint sees a request whose credential the gate refuses."""

    def __init__(
        self, app: ASGIApp, server: ResourceServer, resource_path: str, envelope: bool = False
    ) -> None:
        self.app = app
        self.server = server
        self.resource_path = resource_path
        self.envelope = envelope  # bodies in the REST error envelope

    @classmethod
    def checker(cls, server: ResourceServer, envelope: bool = False) -> "BearerGuard":
        """A guard for endpoints that call ``refusal`` themselves (REST), with the server
        root's metadata in its challenges; it wraps no app."""
        return cls(_no_app, server, "", envelope)

    def _body(self, error: str, description: str) -> dict[str, object]:
        if self.envelope:
            return error_body(error, description)
        return {"error": error, "error_description": description}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # CORS preflights never carry credentials; the endpoint answers them as before.
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        refused = await self.refusal(scope)
        if refused is None:
            await self.app(scope, receive, send)
        else:
            await drain_body(receive)
            await refused(scope, receive, send)

    async def refusal(self, scope: Scope) -> Response | None:
        """The response that turns this request away, or None to let it through."""
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        if len(values) > 1:
            return self.challenge(scope, "invalid_request", "Send one Authorization header.")
        credential = None
        if values:
            # latin-1 decodes any bytes, as Starlette does; bad ones then fail B64TOKEN.
            scheme, _, rest = values[0].decode("latin-1").partition(" ")
            credential = rest.strip()
            problem = credential_problem(scheme, credential)
            if problem is not None:
                return self.challenge(scope, *problem)
            misplaced = self.server.misplaced_token(credential, self.resource_path)
            if misplaced is not None:
                return self.challenge(scope, "invalid_token", misplaced)
        try:
            checked = await self.server.gate.check_credential(credential)
        except Exception as exc:  # the gate's database is down: say so, keep the cause in the log
            if outages.is_unreachable(exc):  # one outage in the log, not a traceback per request
                outages.DATABASE.failed(exc)
            else:
                log.exception("could not check the credential for %s", scope["path"])
            return JSONResponse(
                self._body(
                    "temporarily_unavailable",
                    "Credentials cannot be checked right now; try again shortly.",
                ),
                503,
                headers={"Retry-After": "5"},
            )
        if not isinstance(checked, Refusal):
            if checked is not None:  # who it is: the request's calls need not look again
                remember_identity(scope.setdefault("state", {}), credential, checked)
            return None
        if credential is None:  # RFC 6750 §3.1: no error code when no credential was sent
            return self.challenge(scope, None, checked.message, checked.reason)
        return self.challenge(scope, "invalid_token", checked.message)

    def challenge(
        self, scope: Scope, error: str | None, description: str, reason: str | None = None
    ) -> Response:
        """A 401 whose ``WWW-Authenticate`` sends the client to this resource's metadata."""
        log.info("401 on %s %s: %s", scope["method"], logged_path(scope["path"]), description)
        params = []
        if error is not None:
            params = [f'error="{error}"', f'error_description="{quotable(description)}"']
        params.append(f'resource_metadata="{self.server.metadata_url(scope, self.resource_path)}"')
        return JSONResponse(
            self._body(error or reason or "unauthenticated", description),
            401,
            headers={
                "WWW-Authenticate": "Bearer " + ", ".join(params),
                # Browser clients may only read the challenge when it is exposed to them.
                "Access-Control-Expose-Headers": "WWW-Authenticate",
            },
        )


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("this guard only checks credentials")  # pragma: no cover


async def drain_body(receive: Receive) -> None:
    """Read (and drop) what is left of the request body, up to ``MAX_DRAINED_BODY``.

    Answering without reading it leaves the server unable to reuse the connection, so it closes
    it with data unread; TCP then resets it, and the client can lose the 401 on the way.
    """
    drained = 0
    while drained <= MAX_DRAINED_BODY:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def credential_problem(scheme: str, credential: str) -> tuple[str, str] | None:
    """What is wrong with an Authorization header before the gate need look: (error, why)."""
    if scheme.lower() != "bearer":
        return (
            "invalid_request",
            "Authorization must use the Bearer scheme: Authorization: Bearer <API key or token>.",
        )
    if not credential:
        return "invalid_request", "The Authorization header has no credential after Bearer."
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        return (
            "invalid_token",
            f"The bearer credential is longer than {MAX_CREDENTIAL_LENGTH} characters; "
            "no API key or access token is.",
        )
    if not B64TOKEN.fullmatch(credential):
        return (
            "invalid_token",
            "The bearer credential has characters no API key or access token contains.",
        )
    return None


def quotable(text: str) -> str:
    """``text`` fit for a quoted header parameter: allowed characters only, bounded length."""
    cleaned = UNQUOTABLE.sub("", text.replace('"', "'"))
    if len(cleaned) > MAX_DESCRIPTION:
        cleaned = cleaned[: MAX_DESCRIPTION - 3] + "..."
    return cleaned

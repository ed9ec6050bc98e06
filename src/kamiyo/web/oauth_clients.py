"""Who an OAuth client is: registered ones (RFC 7591) and Client ID Metadata Documents.

A registered client's record is in ``oauth_clients``, its secret kept only as a SHA-256. A
client whose ``client_id`` is an https URL publishes its own metadata there (the MCP
authorization spec's Client ID Metadata Documents): it is fetched with the outbound guards
(``outbound/documents.py``: public addresses only, a deadline, a size cap, no redirects) and
remembered for ``DOCUMENT_CACHE_S``. Such a client is public (``token_endpoint_auth_method``
``none``): nothing it could present would prove more than the URL already does.

Redirect URIs (RFC 8252, OAuth 2.1 §8.4): https; http to a loopback host, any port at request
time; or a native app's private-use scheme (``cursor://…``, ``vscode://…``,
``com.example.app:/cb``). Schemes a browser would run or read locally (``javascript:``,
``data:``, ``file:`` …), web schemes other than those two, http to any other host, and
fragments are refused, each with its reason.
"""

import base64
import binascii
import datetime as dt
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from cachetools import TTLCache
from mcp.server.auth.middleware.client_auth import ClientAuthenticator
from mcp.server.auth.provider import OAuthAuthorizationServerProvider, RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from kamiyo.access.oauth_grants import secret_hash
from kamiyo.db.bounds import unstorable
from kamiyo.db.oauth import CLIENT_ID_WIDTH, OAuthClient
from kamiyo.outbound.documents import DocumentError, fetch_json

log = logging.getLogger(__name__)

DOCUMENT_CACHE_S = 600
MAX_NAME = 200  # the grants table's client_name
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
# Never a place to send a code: the browser runs these, reads local data with them, or they are
# no app's (RFC 8252 §8.11 warns of schemes another app can claim; these no app should).
REFUSED_SCHEMES = frozenset(
    {"javascript", "vbscript", "data", "file", "blob", "filesystem", "about", "view-source"}
)
# Web schemes that are not https/http: nothing listens for a redirect on them.
WEB_SCHEMES = frozenset({"ftp", "ws", "wss", "mailto", "tel", "sms"})


class Client(OAuthClientInformationFull):
    """A client whose loopback redirect URIs take any port at request time (OAuth 2.1 §8.4.2,
    RFC 8252 §7.3: a native app listens on whichever port the system gives it)."""

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is not None and redirect_uri.scheme == "http":
            for registered in self.redirect_uris or []:
                if _same_but_port(registered, redirect_uri):
                    return redirect_uri
        return super().validate_redirect_uri(redirect_uri)


def _same_but_port(registered: AnyUrl, asked: AnyUrl) -> bool:
    return (
        registered.scheme == "http"
        and _is_loopback_address(registered.host or "")
        and (registered.host, registered.path, registered.query)
        == (asked.host, asked.path, asked.query)
        and asked.fragment is None
    )


class ClientLookupError(Exception):
    """A client_id that names no usable client; the message says why."""


def redirect_problem(uri: AnyUrl) -> str | None:
    """Why ``uri`` cannot be a redirect URI (None: it can)."""
    scheme = uri.scheme.lower()
    if uri.fragment is not None:  # RFC 6749 §3.1.2: the code would be lost or leak
        return f"redirect URI {uri} has a fragment"
    if scheme in REFUSED_SCHEMES:
        return f"redirect URI {uri}: the {scheme}: scheme is never a redirect target"
    if scheme in WEB_SCHEMES:
        return f"redirect URI {uri}: the {scheme}: scheme cannot receive an authorization code"
    if scheme == "https":
        return None if uri.host else f"redirect URI {uri} has no host"
    if scheme == "http":
        if (uri.host or "") in LOOPBACK_HOSTS or _is_loopback_address(uri.host or ""):
            return None
        return (
            f"redirect URI {uri}: http:// is only for localhost or a loopback address "
            "(a web client needs https://)"
        )
    # RFC 8252 §7.1: a native app's private-use scheme (cursor://, vscode://, com.example.app:)
    if uri.username or uri.password:
        return f"redirect URI {uri} has a user name or password"
    return None


def returns_to(uri: str) -> str:
    """Where a redirect URI sends the browser, as the consent page names it: the host of a web
    one, the scheme and host of a native app's (``cursor://anysphere.cursor-retrieval``)."""
    parts = urlsplit(uri)
    if parts.scheme in ("https", "http"):
        return parts.netloc
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


def metadata_problem(client: OAuthClientInformationFull) -> str | None:
    """Why the client's metadata cannot be kept and shown (None: it can)."""
    if client.client_name is not None and len(client.client_name) > MAX_NAME:
        return f"client_name is longer than {MAX_NAME} characters"
    for name in ("client_name", "client_uri", "scope"):
        value = getattr(client, name)
        if value is not None and (problem := unstorable(str(value))) is not None:
            return f"{name} contains {problem}"
    return None


def check_redirect_uris(uris: list[AnyUrl] | None) -> None:
    for uri in uris or []:
        if (problem := redirect_problem(uri)) is not None:
            raise RegistrationError("invalid_redirect_uri", problem)


def is_metadata_url(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


class ClientDirectory:
    """Finds clients for the provider: the table for registered ones, the web for URL ids."""

    def __init__(
        self, sessions: Callable[[], async_sessionmaker[AsyncSession]], allow_loopback: bool
    ) -> None:
        self._sessions = sessions
        self._allow_loopback = allow_loopback
        self._documents: TTLCache[str, Client] = TTLCache(maxsize=1000, ttl=DOCUMENT_CACHE_S)

    async def get(self, client_id: str) -> Client | None:
        """The client, or None (why is logged) for the SDK's handlers."""
        try:
            return await self.resolve(client_id)
        except ClientLookupError as exc:
            log.info("OAuth client refused: %s", exc)
            return None

    async def resolve(self, client_id: str) -> Client:
        if not client_id or len(client_id) > CLIENT_ID_WIDTH:
            raise ClientLookupError("client_id is empty or too long")
        if (problem := unstorable(client_id)) is not None:  # no client's id holds one
            raise ClientLookupError(f"client_id contains {problem}")
        if is_metadata_url(client_id):
            return await self._document(client_id)
        async with self._sessions()() as session:
            row = await session.get(OAuthClient, client_id[:64])
        if row is None or row.client_id != client_id:
            raise ClientLookupError(f"client_id {client_id!r} is not registered here")
        record = dict(row.client_metadata, client_id=row.client_id)
        # The stored hash stands in for the secret; HashedSecretAuthenticator compares hashes.
        record["client_secret"] = row.secret_hash
        return Client.model_validate(record)

    async def register(self, client: OAuthClientInformationFull) -> None:
        check_redirect_uris(client.redirect_uris)
        if not client.redirect_uris:
            raise RegistrationError("invalid_redirect_uri", "redirect_uris must name one URI")
        if (problem := metadata_problem(client)) is not None:
            raise RegistrationError("invalid_client_metadata", problem)
        metadata = client.model_dump(
            mode="json", exclude={"client_id", "client_secret"}, exclude_none=True
        )
        async with self._sessions()() as session:
            session.add(
                OAuthClient(
                    client_id=client.client_id,
                    secret_hash=secret_hash(client.client_secret) if client.client_secret else None,
                    client_metadata=metadata,
                    created_at=dt.datetime.now(dt.UTC),
                )
            )
            await session.commit()
        log.info("OAuth client %s registered (%s)", client.client_id, client.client_name or "?")

    async def _document(self, url: str) -> Client:
        if (known := self._documents.get(url)) is not None:
            return known
        parsed = AnyUrl(url)
        host = parsed.host or ""
        loopback = host in LOOPBACK_HOSTS or _is_loopback_address(host)
        if parsed.scheme != "https" and not (loopback and self._allow_loopback):
            raise ClientLookupError(f"client_id {url} must be an https:// URL")
        if parsed.path in (None, "", "/") or parsed.fragment is not None or parsed.username:
            raise ClientLookupError(
                f"client_id {url} must be an https URL with a path, no fragment or user name"
            )
        try:
            document = await fetch_json(url, allow_loopback=self._allow_loopback)
        except DocumentError as exc:
            raise ClientLookupError(f"client metadata at {url}: {exc}") from None
        client = _from_document(url, document)
        self._documents[url] = client
        return client


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _from_document(url: str, document: Any) -> Client:
    if not isinstance(document, dict):
        raise ClientLookupError(f"client metadata at {url} is not a JSON object")
    if document.get("client_id") != url:
        raise ClientLookupError(f"client metadata at {url} names another client_id")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise ClientLookupError(
            f"client metadata at {url}: token_endpoint_auth_method {method!r} is not supported "
            "(metadata-document clients are public: none)"
        )
    try:
        client = Client.model_validate(
            {
                "client_id": url,
                "client_name": document.get("client_name"),
                "client_uri": document.get("client_uri"),
                "redirect_uris": document.get("redirect_uris"),
                "grant_types": document.get("grant_types", ["authorization_code", "refresh_token"]),
                "response_types": document.get("response_types", ["code"]),
                "token_endpoint_auth_method": "none",
                "scope": document.get("scope"),
            }
        )
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise ClientLookupError(f"client metadata at {url}: {where} is not valid") from None
    if not client.redirect_uris:
        raise ClientLookupError(f"client metadata at {url} has no redirect_uris")
    if (problem := metadata_problem(client)) is not None:
        raise ClientLookupError(f"client metadata at {url}: {problem}")
    try:
        check_redirect_uris(client.redirect_uris)
    except RegistrationError as exc:
        raise ClientLookupError(f"client metadata at {url}: {exc.error_description}") from None
    return client


class HashedSecretAuthenticator(ClientAuthenticator):
    """The SDK's client authentication (none, client_secret_post, client_secret_basic), with
    secrets compared by their hashes: the store holds only those.

    The client record handed to the SDK's check carries the presented secret when its hash
    matches the stored one, and an unguessable stand-in otherwise (so presenting the stored
    hash itself does not pass).
    """

    def __init__(self, directory: ClientDirectory) -> None:
        self.directory = directory

    async def authenticate_request(self, request: Request) -> OAuthClientInformationFull:
        presented = await _presented_secrets(request)
        # The SDK's check only calls get_client on the provider it is given.
        revealed = cast(
            OAuthAuthorizationServerProvider[Any, Any, Any], _Revealed(self.directory, presented)
        )
        return await ClientAuthenticator(revealed).authenticate_request(request)


class _Revealed:
    """A provider whose ``get_client`` swaps the stored hash for the matching secret."""

    def __init__(self, directory: ClientDirectory, presented: list[str]) -> None:
        self.directory = directory
        self.presented = presented

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        client = await self.directory.get(client_id)
        if client is None or client.client_secret is None:
            return client
        stored = client.client_secret
        matching = [p for p in self.presented if hmac.compare_digest(secret_hash(p), stored)]
        secret = matching[0] if matching else secrets.token_urlsafe(32)
        return client.model_copy(update={"client_secret": secret})


async def _presented_secrets(request: Request) -> list[str]:
    """Every secret the request offers: the form's ``client_secret`` and Basic's password."""
    found: list[str] = []
    posted = (await request.form()).get("client_secret")
    if isinstance(posted, str):
        found.append(posted)
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return found
        found.append(unquote(decoded.partition(":")[2]))
    return found

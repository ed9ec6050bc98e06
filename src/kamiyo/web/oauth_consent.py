"""The authorization endpoint's human part: a consent page naming the client and what it gets.

``GET /oauth/authorize`` with an authorization request goes through the SDK's handler (it
checks the client, the redirect URI, PKCE S256 and the scope; errors go back to a trusted
redirect URI, else answer 400), whose provider sends the browser to ``/oauth/authorize?consent=
<the checked request, signed>``. That shows the page. Its form posts back with a CSRF token
(an HMAC of a cookie set with the page and of the request, so another site cannot post it),
and approving makes a code and redirects to the client with it and ``state``.

Who is consenting comes from an ``AccountOf``: the dashboard's log-in session. Nobody logged in
is offered the log-in page (which mails a link and, once it is used in this browser, comes back
here) and, as the operators' and scripts' way in, a field for an API key of the account
(``access/keys.py``).
"""

import datetime as dt
import hashlib
import hmac
import html
import logging
import secrets
from pathlib import Path
from string import Template
from typing import Any, Protocol
from urllib.parse import quote

from mcp.server.auth.handlers.authorize import AuthorizationHandler
from mcp.server.auth.provider import construct_redirect_uri
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from kamiyo.access import accounts, keys, oauth_grants
from kamiyo.db.tables import Account
from kamiyo.web.oauth_clients import ClientLookupError, is_metadata_url, returns_to
from kamiyo.web.oauth_provider import CONSENT_TTL_S, Provider

log = logging.getLogger(__name__)

CSRF_COOKIE = "kamiyo_oauth_csrf"
PAGE = Template((Path(__file__).parent / "oauth_consent.html").read_text(encoding="utf-8"))
# Never cached, never framed (a framed consent page could be clicked through unseen).
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
}
DENIED = "The account holder denied access on KAMIYO's consent page"
KEY_FIELD = (
    '<label for="api_key">Log in with an API key of your KAMIYO account</label>\n'
    '<input type="password" id="api_key" name="api_key" autocomplete="off" required>'
)


class AccountOf(Protocol):
    """The account logged in on this browser (its pk), or None."""

    async def __call__(self, request: Request) -> int | None: ...


async def nobody(request: Request) -> int | None:
    """Until the dashboard's sessions exist, no browser is logged in (the page asks for a key)."""
    return None


def _problem(status: int, description: str) -> JSONResponse:
    log.info("OAuth authorization refused: %s", description)
    return JSONResponse(
        {"error": "invalid_request", "error_description": description}, status, headers=NO_STORE
    )


class Consent:
    def __init__(self, provider: Provider, account_of: AccountOf, login_path: str | None) -> None:
        self.provider = provider
        self.handler = AuthorizationHandler(provider)
        self.account_of = account_of
        self.login_path = login_path

    async def endpoint(self, request: Request) -> Response:
        if request.method == "GET":
            signed = request.query_params.get("consent")
            params: Any = request.query_params
        else:
            params = await request.form()
            signed = params.get("consent") if "decision" in params else None
        if not isinstance(signed, str):
            client_id = params.get("client_id")
            if isinstance(client_id, str) and is_metadata_url(client_id):
                try:  # the SDK would only say "not found": say why
                    await self.provider.clients.resolve(client_id)
                except ClientLookupError as exc:
                    return _problem(400, str(exc))
            return self._with_issuer(await self.handler.handle(request))
        request_ = self.provider.read_consent(signed)
        if request_ is None:
            return _problem(400, "This consent page is invalid or has expired; start again.")
        if request.method == "GET":
            return await self._page(request, signed, request_)
        return await self._decide(request, params, signed, request_)

    async def _page(
        self, request: Request, signed: str, asked: dict[str, Any], notice: str = ""
    ) -> Response:
        client = await self.provider.clients.get(asked["client_id"])
        if client is None:
            return _problem(400, "The client of this request is no longer known.")
        account_pk = await self.account_of(request)
        who, login = "the account of the API key you enter, on that account's plan", KEY_FIELD
        if self.login_path is not None:  # a person logs in by mail and comes back here
            back = quote(request.url.path + "?" + request.url.query, safe="")
            login = (
                f'<p><a href="{html.escape(self.login_path)}?next={back}">Log in with your email'
                "</a> to answer as your account, or enter one of its API keys.</p>\n" + login
            )
        if account_pk is not None:
            async with self.provider.sessions()() as session:
                account = await session.get(Account, account_pk)
                if account is not None:
                    grace = self.provider.settings.stripe.past_due_grace_days
                    tier = await accounts.current_tier(session, account, dt.timedelta(days=grace))
                    who, login = f"{account.email} on your {tier.value} plan", ""
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        name = client.client_name or client.client_id
        body = PAGE.substitute(
            client_name=html.escape(name),
            redirect_host=html.escape(returns_to(asked["redirect_uri"])),
            who=html.escape(who),
            resource=html.escape(asked["resource"]),
            action=html.escape(request.url.path),
            consent=html.escape(signed),
            csrf=self._csrf(cookie, signed),
            login=login,
            notice=f'<p role="alert"><strong>{html.escape(notice)}</strong></p>' if notice else "",
        )
        response = HTMLResponse(body, 401 if notice else 200, headers=NO_STORE)
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            max_age=CONSENT_TTL_S,
            path=request.url.path,
            secure=self.provider.issuer.startswith("https://"),
            httponly=True,
            samesite="strict",
        )
        return response

    def _csrf(self, cookie: str, signed: str) -> str:
        secret = self.provider.settings.auth.secret_key.get_secret_value().encode()
        return hmac.new(secret, f"{cookie}|{signed}".encode(), hashlib.sha256).hexdigest()

    async def _decide(
        self, request: Request, form: FormData, signed: str, asked: dict[str, Any]
    ) -> Response:
        cookie, sent = request.cookies.get(CSRF_COOKIE), form.get("csrf")
        if not cookie or not isinstance(sent, str):
            return _problem(403, "The consent form was not sent from its page (no CSRF token).")
        if not hmac.compare_digest(self._csrf(cookie, signed), sent):
            return _problem(403, "The consent form's CSRF token does not match its page.")
        redirect = asked["redirect_uri"]
        if form.get("decision") != "approve":
            log.info("OAuth consent denied for %s", asked["client_id"])
            # The description is what a client shows its user (the MCP Inspector prints it).
            return self._back(
                redirect, error="access_denied", error_description=DENIED, state=asked["state"]
            )
        account_pk = await self.account_of(request)
        if account_pk is None:
            account_pk = await self._key_account(form.get("api_key"))
            if account_pk is None:
                return await self._page(
                    request, signed, asked, "That API key is unknown, revoked or disabled."
                )
        client = await self.provider.clients.get(asked["client_id"])
        request_ = oauth_grants.CodeRequest(
            account_pk=account_pk,
            client_id=asked["client_id"],
            client_name=((client.client_name if client else None) or asked["client_id"])[:200],
            redirect_uri=redirect,
            redirect_uri_explicit=bool(asked["explicit"]),
            code_challenge=asked["challenge"],
            resource=asked["resource"],
            scopes=list(asked["scopes"]),
        )
        async with self.provider.sessions()() as session:
            code = await oauth_grants.create_code(session, request_)
            await session.commit()
        log.info("OAuth consent given to %s by account %s", asked["client_id"], account_pk)
        return self._back(redirect, code=code, state=asked["state"])

    async def _key_account(self, key: object) -> int | None:
        if not isinstance(key, str) or not keys.looks_like_key(key.strip()):
            return None
        async with self.provider.sessions()() as session:
            found = await keys.account_for_key(session, key.strip())
        if found is None or not accounts.is_active(found[0]):
            return None
        return found[0].pk

    def _with_issuer(self, response: Response) -> Response:
        """The SDK's error redirects to the client, with ``iss`` too (RFC 9207 §2)."""
        location = response.headers.get("location")
        if location is None or location.startswith(self.provider.consent_url_prefix):
            return response  # an answer here, or on to the consent page
        return RedirectResponse(
            construct_redirect_uri(location, iss=self.provider.issuer), 302, NO_STORE
        )

    def _back(self, redirect_uri: str, **params: str | None) -> Response:
        # RFC 9207: the issuer rides along, so a client talking to several servers can tell
        # which one answered (mix-up attacks).
        back = construct_redirect_uri(redirect_uri, **params, iss=self.provider.issuer)
        return RedirectResponse(back, 302, NO_STORE)

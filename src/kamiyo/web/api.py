"""REST routes for accounts and billing, and the pages behind one-time key links.

- ``POST /api/v1/signup {email}``: always 202 "check your email" (only a malformed address gets
  400), so the answer never tells whether the address had an account; the work (account, link,
  mail) runs after the answer is sent, so its timing tells nothing either.
- ``POST /api/v1/billing/checkout {tier}`` and ``POST /api/v1/billing/portal``: for a caller
  with an API key or token; anonymous callers get a 401 challenge as on the MCP endpoints.
- ``GET /keys/reveal/{token}`` shows a button and uses nothing up: mail scanners and link
  previews fetch links with GET. ``POST`` to the same address creates the key and shows it once.

JSON in and out, bodies of at most 64 kB, errors in the REST envelope
``{"error": {"code", "message", "details"}}`` (web/errors.py).
"""

import html
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kamiyo.access.accounts import ENTITLED_STATES, AccountError, normalize_email
from kamiyo.access.gate import Identity
from kamiyo.billing import onboarding, stripe_api
from kamiyo.billing.mailer import MailError
from kamiyo.db.tables import Account, Subscription
from kamiyo.service.state import ServerState
from kamiyo.web.access_log import logged_path
from kamiyo.web.auth import BearerGuard, ResourceServer
from kamiyo.web.errors import error_response

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
SIGNUPS_PER_PEER = RateLimitItemPerMinute(5)
# Per address, across peers: a stranger cannot fill someone's inbox. Over it, the answer is the
# same 202 and no mail goes out, so the limit says nothing about the address either.
SIGNUPS_PER_ADDRESS = RateLimitItemPerHour(5)
SIGNUP_ANSWER = {"status": "check your email"}
# Subscriptions that a second checkout would double: change plans in the portal instead.
LIVE_STRIPE_STATES = ENTITLED_STATES | {"past_due"}


class ApiError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        return error_response(self.status, self.error, self.description)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object ({} when empty), refused past MAX_BODY_BYTES before parsing."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"Bodies are limited to {MAX_BODY_BYTES} bytes.")
    body = bytearray()
    try:
        async for chunk in request.stream():  # also caps chunked bodies with no Content-Length
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(
                    413, "payload_too_large", f"Bodies are limited to {MAX_BODY_BYTES} bytes."
                )
    except ClientDisconnect:  # an ordinary event: one line, no traceback; nobody reads the 400
        log.info("%s %s: the client left mid-body", request.method, logged_path(request.url.path))
        raise ApiError(400, "incomplete_body", "The body ended before it was complete.") from None
    if not body.strip():
        return {}
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "Send JSON (Content-Type: application/json).")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_request", "The body must be a JSON object.")
    return value


def text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "invalid_request", f'The body needs "{name}" as a string.')
    return value


class _Limit:
    """A moving window in this process: sign-ups are rare, so no shared store is needed."""

    def __init__(self, item: RateLimitItem) -> None:
        self.item = item
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, subject: str) -> int | None:
        """Count a hit for ``subject``; seconds to wait when it is over the limit, else None."""
        if self._limiter.hit(self.item, subject):
            return None
        reset = self._limiter.get_window_stats(self.item, subject).reset_time
        return max(1, math.ceil(reset - time.time()))


class AccountApi:
    def __init__(self, state: ServerState, resource: ResourceServer) -> None:
        self.state = state
        self.settings = state.settings
        self.onboarding = onboarding.Onboarding.from_settings(state.settings)
        # The MCP endpoints' guard, for the same 401 challenges and the same 503 when the
        # gate cannot decide; its metadata is the server root's.
        self.guard = BearerGuard.checker(resource, envelope=True)
        self.per_peer = _Limit(SIGNUPS_PER_PEER)
        self.per_address = _Limit(SIGNUPS_PER_ADDRESS)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/signup", _json_errors(self.signup), methods=["POST"]),
            Route("/api/v1/billing/checkout", _json_errors(self.checkout), methods=["POST"]),
            Route("/api/v1/billing/portal", _json_errors(self.portal), methods=["POST"]),
            Route("/keys/reveal/{token}", self.reveal_form, methods=["GET"]),
            Route("/keys/reveal/{token}", self.reveal, methods=["POST"]),
        ]

    async def signup(self, request: Request) -> Response:
        peer = request.client.host if request.client else "unknown"
        wait = self.per_peer.retry_after(peer)
        if wait is not None:
            return error_response(
                429,
                "rate_limited",
                f"Too many sign-ups from here; retry in {wait} s.",
                {"retry_after_seconds": wait},
                headers={"Retry-After": str(wait)},
            )
        body = await read_json(request)
        try:
            address = normalize_email(text_field(body, "email"))
        except AccountError:
            raise ApiError(400, "invalid_email", '"email" is not an email address.') from None
        try:
            onboarding.base_url(self.settings.site)
        except onboarding.SignupUnavailableError:
            log.error("sign-up refused: KAMIYO_PUBLIC_URL is not set, mails could not link back")
            raise ApiError(503, "unavailable", "Sign-up is not available on this server.") from None
        task = None
        if self.per_address.retry_after(address) is None:
            task = BackgroundTask(self._signup_in_background, address)
        else:
            log.info("sign-up limit reached for one address: no mail sent")
        return JSONResponse(SIGNUP_ANSWER, 202, background=task)

    async def _signup_in_background(self, address: str) -> None:
        try:
            await onboarding.signup(self.state.require_runtime().sessions, self.onboarding, address)
        except (MailError, onboarding.SignupUnavailableError, AccountError) as exc:
            log.error("sign-up mail not sent: %s", exc)
        except Exception:  # nobody awaits this task: the log is the only place to report
            log.exception("sign-up failed")

    async def checkout(self, request: Request) -> Response:
        caller = await self._caller(request)
        if isinstance(caller, Response):
            return caller
        tier = text_field(await read_json(request), "tier")
        account, subscription = await self._account(caller)
        if (
            subscription is not None
            and subscription.stripe_subscription_id
            and subscription.status in LIVE_STRIPE_STATES
        ):
            raise ApiError(
                409,
                "already_subscribed",
                "This account already has a subscription; change plans in the billing portal "
                "(POST /api/v1/billing/portal).",
            )
        customer = subscription.stripe_customer_id if subscription is not None else None
        url = await stripe_api.create_checkout_session(
            self.settings.stripe, self.settings.site, account, tier, customer_id=customer
        )
        return JSONResponse({"url": url})

    async def portal(self, request: Request) -> Response:
        caller = await self._caller(request)
        if isinstance(caller, Response):
            return caller
        await read_json(request)  # no fields, but the same limits and checks
        _, subscription = await self._account(caller)
        if subscription is None or not subscription.stripe_customer_id:
            raise ApiError(
                409,
                "no_billing_account",
                "This account has never paid through Stripe, so it has no billing portal yet; "
                "subscribe first (POST /api/v1/billing/checkout).",
            )
        url = await stripe_api.create_portal_session(
            self.settings.stripe, self.settings.site, subscription.stripe_customer_id
        )
        return JSONResponse({"url": url})

    async def _caller(self, request: Request) -> Identity | Response:
        """The account behind the request's bearer credential, or the response refusing it."""
        refused = await self.guard.refusal(request.scope)
        if refused is not None:
            return refused
        credential = request.headers.get("authorization", "").partition(" ")[2].strip()
        if not credential:
            return self.guard.challenge(
                request.scope,
                None,
                "Billing needs an account: send its API key or access token "
                "(Authorization: Bearer ...).",
                "unauthenticated",
            )
        identity = await self.state.gate.identify(credential)  # cached: the guard just did
        if not isinstance(identity, Identity) or identity.account_pk is None:
            return self.guard.challenge(request.scope, "invalid_token", "Credential refused.")
        return identity

    async def _account(self, caller: Identity) -> tuple[Account, Subscription | None]:
        async with self.state.require_runtime().sessions() as session:
            account = await session.get(Account, caller.account_pk)
            subscription = await session.get(Subscription, caller.account_pk)
        if account is None:  # deleted since the gate remembered it
            raise ApiError(401, "invalid_token", "This credential's account no longer exists.")
        return account, subscription

    async def reveal_form(self, request: Request) -> Response:
        token = request.path_params["token"]
        if not await onboarding.check_token(self.state.require_runtime().sessions, token):
            return _gone()
        return _page(
            200,
            "Create your API key",
            "<p>Pressing the button creates a new API key and shows it on the next page, once. "
            "This link then stops working.</p>"
            '<form method="post"><button type="submit">Create and show my key</button></form>',
        )

    async def reveal(self, request: Request) -> Response:
        sessions = self.state.require_runtime().sessions
        try:
            new = await onboarding.reveal_key(
                sessions, request.path_params["token"], self.onboarding.past_due_grace
            )
        except AccountError as exc:
            return _page(
                409,
                "No key was made",
                f"<p>{html.escape(str(exc))}.</p><p>This link still works once that is done.</p>",
            )
        if new is None:
            return _gone()
        snippet = ""
        if self.settings.site.public_url:
            snippet = (
                "<p>For Claude Desktop, put this in <code>claude_desktop_config.json</code> "
                "and restart it:</p>"
                f"<pre>{html.escape(onboarding.setup_snippet(self.settings.site, new.key))}</pre>"
            )
        return _page(
            200,
            "Your API key",
            "<p>Copy it now: it is shown this once, and KAMIYO keeps only a fingerprint of it."
            "</p>"
            f'<pre id="key">{html.escape(new.key)}</pre>'
            f"<p>Name: {html.escape(new.name)}</p>{snippet}",
        )


def routes(state: ServerState, resource: ResourceServer) -> list[BaseRoute]:
    """The account and billing routes, for ``create_app``'s route list."""
    return AccountApi(state, resource).routes()


def _json_errors(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Known failures as JSON errors; an unknown one as a short 500, its traceback in the log."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return exc.response()
        except stripe_api.PlanError as exc:
            return ApiError(400, "invalid_tier", f"{exc}.").response()
        except stripe_api.BillingUnavailableError as exc:
            return ApiError(503, "billing_unavailable", f"{exc}.").response()
        except stripe_api.BillingError as exc:
            return ApiError(502, "payment_service_error", f"{exc}.").response()
        except Exception:
            log.exception("%s %s failed", request.method, logged_path(request.url.path))
            return ApiError(500, "internal_error", "Something went wrong on our side.").response()

    return wrapped


def _gone() -> Response:
    return _page(
        410,
        "This link was used or has expired",
        "<p>Each link works once, for 24 hours, and only the newest one sent to you works. "
        "Sign up again with the same address to get a new link.</p>",
    )


# The key page must not be cached, framed, indexed, or leak its address through Referer.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def _page(status: int, title: str, body: str) -> HTMLResponse:
    """A whole page; ``body`` is markup whose dynamic parts the caller has escaped."""
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} - KAMIYO</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;"
        "padding:0 1rem}pre{background:#f4f4f4;padding:1rem;overflow-x:auto;"
        "user-select:all}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status,
        headers=PAGE_HEADERS,
    )

"""``POST /webhooks/stripe``: the HTTP face of ``billing.webhooks``.

Stripe only needs a status: 2xx means "delivered", anything else is retried for days. So every
answer is a short JSON object, never a traceback; rejections are logged at WARNING with their
reason (never the secret, never the body), and work that may fail after the state change (the
welcome email) runs after the response, where its failure cannot make Stripe redeliver.
"""

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kamiyo.billing.webhooks import handle_event
from kamiyo.config import Settings

log = logging.getLogger(__name__)

# Stripe's event bodies are a few kilobytes; anything near this is not from Stripe.
MAX_BODY_BYTES = 1024 * 1024
PATH = "/webhooks/stripe"


def stripe_webhook_route(
    settings: Settings,
    sessions: Callable[[], async_sessionmaker[AsyncSession]],
    on_first_activation: Callable[[int], Awaitable[None]],
) -> Route:
    """The route; ``sessions`` is called per request (the app opens its database on start)."""

    async def stripe_webhook(request: Request) -> JSONResponse:
        if settings.stripe.webhook_secret is None:
            log.warning("stripe webhook refused: KAMIYO_STRIPE_WEBHOOK_SECRET is not set")
            return JSONResponse({"error": "webhooks are not configured"}, 503)
        body = await _read_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            result = await handle_event(
                sessions(), settings, body, request.headers.get("stripe-signature")
            )
        except Exception:
            # Nothing was committed; a 500 makes Stripe deliver again later.
            log.exception("stripe webhook failed")
            return JSONResponse({"error": "internal error"}, 500)
        if not result.accepted:
            log.warning("stripe webhook rejected (%s): %s", result.status, result.message)
            return JSONResponse({"error": result.message}, result.status)
        task = BackgroundTask(_activated, result.activated) if result.activated else None
        answer = {"received": True, "duplicate": result.duplicate, "outcome": result.message}
        return JSONResponse(answer, 200, background=task)

    async def _activated(account_pks: tuple[int, ...]) -> None:
        # The change is committed and Stripe has its answer: a failure here is only logged.
        for account_pk in account_pks:
            try:
                await on_first_activation(account_pk)
            except Exception:
                log.exception("first-activation follow-up failed for account %s", account_pk)

    return Route(PATH, stripe_webhook, methods=["POST"])


async def _read_body(request: Request) -> bytes | JSONResponse:
    """The raw body (signatures cover its exact bytes), refused early when it is too large."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            log.warning("stripe webhook rejected (400): bad Content-Length")
            return JSONResponse({"error": "bad Content-Length"}, 400)
        if int(declared) > MAX_BODY_BYTES:
            return _too_large()
    body = bytearray()
    try:
        # Counted while streaming too: a chunked body declares no length.
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _too_large()
    except ClientDisconnect:
        log.warning("stripe webhook rejected (400): client disconnected mid-body")
        return JSONResponse({"error": "incomplete body"}, 400)
    return bytes(body)


def _too_large() -> JSONResponse:
    log.warning("stripe webhook rejected (413): body over %d bytes", MAX_BODY_BYTES)
    return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)

"""Stripe webhook deliveries: verify the signature, handle each event once, apply it.

No HTTP framework here: the web layer passes the raw body and the ``Stripe-Signature`` header
and answers with the ``WebhookResult``. Stripe retries anything but a 2xx for days, so a
delivery we can never accept (bad signature, unreadable body) gets a 400 and one we accepted,
including a duplicate or an event we do not act on, gets a 200.

Exactly once: the event's id goes into ``stripe_events`` in the same transaction as the state
change it causes, and that insert is the transaction's first write. A redelivery finds the row
and changes nothing. A concurrent duplicate on PostgreSQL waits on the uncommitted key, then
fails with an IntegrityError once the first commits, and is answered as a duplicate; on SQLite
the first write takes the database's write lock, so duplicates queue behind it and then fail the
same way.
"""

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import revocation
from kamiyo.billing.subscriptions import (
    Applied,
    apply_checkout_completed,
    apply_invoice_paid,
    apply_invoice_payment_failed,
    apply_subscription,
)
from kamiyo.config import Settings, StripeSettings
from kamiyo.db.tables import StripeEvent

log = logging.getLogger(__name__)

# Stripe's own default: a signed delivery older than five minutes may be a replay.
TOLERANCE_S = 300
# A non-duplicate IntegrityError means another event for the same account won a race (e.g. both
# created its subscription row); trying again reads what that one committed.
_ATTEMPTS = 3
_OUTCOME_WIDTH = 200
_TYPE_WIDTH = 100
_ID_WIDTH = 255

Handler = Callable[
    [AsyncSession, StripeSettings, Mapping[str, Any], dt.datetime], Awaitable[Applied]
]

HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": apply_checkout_completed,
    "customer.subscription.created": apply_subscription,
    "customer.subscription.updated": apply_subscription,
    "customer.subscription.deleted": apply_subscription,
    "customer.subscription.paused": apply_subscription,
    "customer.subscription.resumed": apply_subscription,
    "invoice.paid": apply_invoice_paid,
    "invoice.payment_failed": apply_invoice_payment_failed,
}


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """The answer for Stripe, and what the web layer does after the commit."""

    status: int  # 200 accepted; 400 never acceptable; 503 no signing secret configured
    message: str
    duplicate: bool = False
    event_id: str | None = None
    event_type: str | None = None
    # Accounts that now hold a paid tier for the first time (committed already).
    activated: tuple[int, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class _Event:
    id: str
    type: str
    created: dt.datetime
    obj: Mapping[str, Any]


async def handle_event(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    payload: bytes,
    signature_header: str | None,
) -> WebhookResult:
    """Verify one delivery and apply its event once. Database errors propagate (Stripe retries)."""
    secret = settings.stripe.webhook_secret
    if secret is None or not secret.get_secret_value():
        return WebhookResult(503, "webhooks are not configured")
    verified = _verify(payload, signature_header, secret.get_secret_value())
    if isinstance(verified, WebhookResult):
        return verified
    event = verified
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            result = await _handle_once(session_factory, settings, event)
        except IntegrityError:
            if await _recorded(session_factory, event.id):
                result = _duplicate(event)
            elif attempt == _ATTEMPTS:
                raise
            else:
                log.info("stripe event %s raced another event; trying again", event.id)
                continue
        log.info("stripe event %s (%s): %s", event.id, event.type, result.message)
        return result
    raise AssertionError("unreachable")  # the loop returns or raises


async def _handle_once(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings, event: _Event
) -> WebhookResult:
    async with session_factory() as session, session.begin():
        if await session.get(StripeEvent, event.id) is not None:
            return _duplicate(event)
        record = StripeEvent(
            id=event.id,
            type=event.type[:_TYPE_WIDTH],
            created=event.created,
            received_at=dt.datetime.now(dt.UTC),
            outcome="handling",
        )
        session.add(record)
        await session.flush()  # the first write: see the module notes
        handler = HANDLERS.get(event.type)
        if handler is None:
            applied = Applied(f"ignored: unhandled event type {event.type}")
        else:
            applied = await handler(session, settings.stripe, event.obj, event.created)
        record.outcome = applied.outcome[:_OUTCOME_WIDTH]
    if applied.credentials_changed and applied.account_pk is not None:
        async with session_factory() as session:  # every instance sees it on the next call
            await revocation.announce(session, settings, [applied.account_pk])
    activated = (applied.account_pk,) if applied.first_activation and applied.account_pk else ()
    return WebhookResult(
        200, applied.outcome, event_id=event.id, event_type=event.type, activated=activated
    )


async def _recorded(session_factory: async_sessionmaker[AsyncSession], event_id: str) -> bool:
    async with session_factory() as session:
        return await session.get(StripeEvent, event_id) is not None


def _duplicate(event: _Event) -> WebhookResult:
    return WebhookResult(
        200, "duplicate: handled already", duplicate=True, event_id=event.id, event_type=event.type
    )


def _verify(payload: bytes, header: str | None, secret: str) -> _Event | WebhookResult:
    """The delivery's event if Stripe signed it within the tolerance, else the rejection."""
    if not header:
        return WebhookResult(400, "missing Stripe-Signature header")
    try:
        stripe.Webhook.construct_event(payload, header, secret, tolerance=TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        return WebhookResult(400, _signature_reason(str(exc)))
    except (ValueError, TypeError, AttributeError):
        # construct_event decodes and parses the body after checking the header: a body that
        # is not UTF-8, not JSON, or JSON but not an object ends here.
        return WebhookResult(400, "malformed body: not a JSON event")
    # Our own parse of the signed bytes: plain mappings, not the library's API objects.
    data = json.loads(payload)
    inner = data.get("data")
    obj = inner.get("object") if isinstance(inner, Mapping) else None
    event_id, event_type, created = data.get("id"), data.get("type"), data.get("created")
    if not (isinstance(event_id, str) and event_id and len(event_id) <= _ID_WIDTH):
        return WebhookResult(400, "malformed event: no id")
    if not (isinstance(event_type, str) and event_type):
        return WebhookResult(400, "malformed event: no type")
    if not (isinstance(created, int) and not isinstance(created, bool) and created >= 0):
        return WebhookResult(400, "malformed event: no created time")
    if not isinstance(obj, Mapping):
        return WebhookResult(400, "malformed event: no data.object")
    return _Event(event_id, event_type, dt.datetime.fromtimestamp(created, dt.UTC), obj)


def _signature_reason(message: str) -> str:
    """A short reason from the library's message (which may quote the header; never the body)."""
    lowered = message.lower()
    if "tolerance" in lowered:
        return f"stale signature: timestamp older than {TOLERANCE_S} s"
    if "matching the expected signature" in lowered:
        return "signature does not match"
    if "expected scheme" in lowered:
        return "no v1 signature in Stripe-Signature header"
    if "unable to extract" in lowered:
        return "malformed Stripe-Signature header"
    return "signature verification failed"

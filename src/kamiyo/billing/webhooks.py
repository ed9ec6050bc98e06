"""Stripe webhook deliveries: verify the signature, handle each event once, apply it.

No HTTP framework here: the web layer passes the raw body and the ``Stripe-Signature`` header
and answers with the ``WebhookResult``. Stripe retries anything but a 2xx for days, so a
delivery we can never accept gets a 400 and one we accepted, including a duplicate or an event
we do not act on, gets a 200. Never a 500 for what a body holds: only a database failure is
worth Stripe's retry.

- 400: no valid signature, a signature dated more than ``TOLERANCE_S`` from our clock (either
  way), or a signed body whose envelope we cannot record or order by: not JSON, nested deeper
  than ``webhook_payload.MAX_DEPTH``, ``id``/``type`` not printable or too long, ``created``
  out of range or after the signature. Stripe sends none of these, so its retries are no cost,
  and there is no event id we could safely record.
- 200, recorded: an event whose object breaks what Stripe sends (an id with NUL, a time of
  1e20: ``stripe_objects``). Its envelope is sound, so it is recorded as ``ignored: unusable
  ...`` and acknowledged; a redelivery would carry the same bytes and fail the same way, and a
  week of failing deliveries makes Stripe disable the endpoint. It logs one WARNING; the
  operator can catch up with ``kamiyo billing sync``.

Exactly once: the event's id goes into ``stripe_events`` in the same transaction as the state
change it causes, and that insert is the transaction's first write. A redelivery finds the row
and changes nothing. A concurrent duplicate on PostgreSQL waits on the uncommitted key, then
fails with an IntegrityError once the first commits, and is answered as a duplicate; on SQLite
the first write takes the database's write lock, so duplicates queue behind it and then fail the
same way.
"""

import datetime as dt
import logging
import time
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
from kamiyo.billing.webhook_payload import read_event
from kamiyo.config import Settings, StripeSettings
from kamiyo.db.bounds import text_width
from kamiyo.db.tables import StripeEvent

log = logging.getLogger(__name__)

# Stripe's own default: a signed delivery older than five minutes may be a replay.
TOLERANCE_S = 300
# A non-duplicate IntegrityError means another event for the same account won a race (e.g. both
# created its subscription row); trying again reads what that one committed.
_ATTEMPTS = 3
_OUTCOME_WIDTH = text_width(StripeEvent.outcome)

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
    # Acknowledged and recorded, but its object could not be used (Applied.unusable).
    unusable: bool = False

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
        level = logging.WARNING if result.unusable else logging.INFO
        log.log(level, "stripe event %s (%s): %s", event.id, event.type, result.message)
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
            type=event.type,
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
        200,
        applied.outcome,
        event_id=event.id,
        event_type=event.type,
        activated=activated,
        unusable=applied.unusable,
    )


async def _recorded(session_factory: async_sessionmaker[AsyncSession], event_id: str) -> bool:
    async with session_factory() as session:
        return await session.get(StripeEvent, event_id) is not None


def _duplicate(event: _Event) -> WebhookResult:
    return WebhookResult(
        200, "duplicate: handled already", duplicate=True, event_id=event.id, event_type=event.type
    )


def _verify(payload: bytes, header: str | None, secret: str) -> _Event | WebhookResult:
    """The delivery's event if Stripe signed it within the tolerance, else the rejection.

    The signature is checked on the raw bytes first (the library's HMAC), so nothing of an
    unsigned body is read. A signed body we cannot record or order by (see ``read_event``) gets
    a 400: Stripe sends none, so whoever holds the secret sees the refusal, and nothing of it
    was stored to deduplicate by. Objects we can record but not use are the handlers' to
    acknowledge (``Applied.unusable``).
    """
    if not header:
        return WebhookResult(400, "missing Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        return WebhookResult(400, _signature_reason(str(exc)))
    except UnicodeDecodeError:  # the library decodes the body before it looks at the header
        return WebhookResult(400, "malformed body: not a JSON event")
    # The library refuses only old timestamps; one ahead of our clock is refused alike.
    signed_at = _signed_at(header)
    if signed_at > time.time() + TOLERANCE_S:
        return WebhookResult(400, f"future signature: timestamp over {TOLERANCE_S} s ahead")
    envelope = read_event(payload)
    if isinstance(envelope, str):
        return WebhookResult(400, envelope)
    if envelope.created > signed_at + TOLERANCE_S:
        # An event dated after its delivery would make every real later event look stale.
        return WebhookResult(400, "malformed event: created after it was signed")
    created = dt.datetime.fromtimestamp(envelope.created, dt.UTC)
    return _Event(envelope.id, envelope.type, created, envelope.data.object)


def _signed_at(header: str) -> int:
    """The header's ``t=`` as the library reads it (the first one), after it verified it."""
    items = [item.split("=", 2) for item in header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


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

"""Stripe subscription state applied to our ``subscriptions`` rows (database logic, no HTTP).

Webhooks are the source of truth (DESIGN.md). Each function takes one Stripe object from an
event and the event's ``created`` time (``as_of``), changes at most one account's row, and says
what it did. The caller runs it inside the transaction that records the event, so a change and
the record that it happened commit together.

Finding the account: a subscription's id, else its customer's id, else ``metadata.account_pk``
(our checkout sessions put it on the subscription through ``subscription_data.metadata``).

Ordering: which of two states of a subscription wins is ``billing/ordering.py``.

Tiers set by hand (``kamiyo accounts set-tier``, ``tier_source = "operator"``): Stripe stays the
source of truth for paying customers. The next Stripe event that applies to such an account
(not one ignored as stale or unrelated) writes Stripe's state over the operator's and makes the
row Stripe's again; when that changes the tier the account holds, a WARNING names the account
(by pk, never its email) and both tiers. A live subscription also replaces a hand-set row
whatever its rank (``ordering.superseded``). Every applied change to a row's tier or status
bumps the account's credentials version (``access/revocation.py``), so running servers see it
on the next call once the caller announces it after the commit (``Applied.credentials_changed``).
"""

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import revocation
from kamiyo.access.accounts import TierSource, entitled_tier
from kamiyo.alerts import mail
from kamiyo.billing import ordering
from kamiyo.billing.ordering import LIVE
from kamiyo.billing.stripe_objects import (
    StripeCheckout,
    StripeInvoice,
    StripeSubscription,
    cancels_at_period_end,
    deciding_item,
    read,
)
from kamiyo.config import StripeSettings
from kamiyo.db.tables import Account, Subscription
from kamiyo.tiers import Tier

log = logging.getLogger(__name__)

# subscriptions.status holds 16 characters and Stripe's "incomplete_expired" has 18.
_STORED_STATUS = {"incomplete_expired": "expired"}
_STATUS_WIDTH = 16


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one Stripe object did."""

    outcome: str
    account_pk: int | None = None
    # The account now holds a paid tier it did not hold before (its welcome mail is queued).
    first_activation: bool = False
    # The row's tier or status changed: announce it after commit (revocation.announce).
    credentials_changed: bool = False
    # The object breaks what Stripe sends (stripe_objects.read): nothing of it was applied.
    unusable: bool = False


def _unusable(kind: str, reason: str) -> Applied:
    return Applied(f"ignored: unusable {kind}: {reason}", unusable=True)


async def apply_subscription(
    session: AsyncSession, billing: StripeSettings, obj: Mapping[str, Any], as_of: dt.datetime
) -> Applied:
    """Apply a subscription object (``customer.subscription.*``) to its account's row."""
    subscription = read(StripeSubscription, obj)
    if isinstance(subscription, str):
        return _unusable("subscription", subscription)
    subscription_id, customer_id = subscription.id, subscription.customer
    status = _stored_status(subscription.status)
    account_pk = await _find_account(
        session,
        subscription_id=subscription_id,
        customer_id=customer_id,
        account_ref=subscription.account_ref,
    )
    if account_pk is None:
        log.info("stripe: %s of unknown customer %s ignored", subscription_id, customer_id)
        return Applied(f"ignored: unknown customer {customer_id or '(none)'}")
    row = await _locked_row(session, account_pk)
    before = _Before.of(row, _grace(billing))
    item = deciding_item(billing, subscription)
    if row is not None and row.stripe_subscription_id not in (None, subscription_id):
        reason = ordering.superseded(row, subscription_id, status, item.tier)
        if reason is not None:
            return Applied(f"ignored: {reason}", account_pk)
    same = row is not None and row.stripe_subscription_id == subscription_id
    stale = ordering.stale(row, as_of, status, same_subscription=same)
    if stale is not None:
        return Applied(f"ignored: {subscription_id} {stale}", account_pk)
    conflict = await _held_elsewhere(session, account_pk, customer_id, subscription_id)
    if conflict is not None:
        log.warning(
            "stripe: %s not applied to account %s: %s", subscription_id, account_pk, conflict
        )
        return Applied(f"ignored: {conflict}", account_pk)

    grace = _grace(billing)
    was_paid = ordering.was_paid(row, subscription_id, as_of, grace)
    if row is None:
        row = Subscription(account_pk=account_pk, tier=Tier.FREE.value, status=status)
        session.add(row)
    note = ""
    if item.tier is not None:
        row.tier = item.tier.value
    else:
        # Never grant a tier for a price we do not sell. The same subscription keeps the tier it
        # already had (an operator adds the price to KAMIYO_STRIPE_PRICES); others get free.
        row.tier = row.tier if same else Tier.FREE.value
        note = f"; unknown price {item.price_id}: tier not granted"
        log.warning("stripe: %s has price %s, not in stripe_prices", subscription_id, item.price_id)
    if status == "past_due":
        # Grace runs from the first failure: keep the start while the subscription stays past_due.
        if not (same and row.status == "past_due" and row.past_due_since is not None):
            row.past_due_since = as_of
    else:
        row.past_due_since = None
    row.status = status
    row.stripe_subscription_id = subscription_id
    row.stripe_customer_id = customer_id or row.stripe_customer_id
    row.stripe_price_id = item.price_id
    row.current_period_end = item.period_end
    row.cancel_at_period_end = cancels_at_period_end(subscription, item.period_end)
    row.stripe_state_at = as_of
    row.updated_at = _now()
    first = not was_paid and ordering.is_paid(row, as_of, grace)
    if first:  # in this transaction: a crash after the commit still sends it
        await mail.queue(session, mail.WELCOME, _now(), account_pk=account_pk)
    changed = await _stripe_holds(session, row, before, grace)
    ending = " (cancels at period end)" if row.cancel_at_period_end and status in LIVE else ""
    return Applied(f"{row.tier} {status}{ending}{note}", account_pk, first, changed)


async def apply_checkout_completed(
    session: AsyncSession, billing: StripeSettings, obj: Mapping[str, Any], as_of: dt.datetime
) -> Applied:
    """Link a completed subscription checkout's customer and subscription to our account.

    It grants nothing: the tier comes from the subscription's own events, which Stripe always
    sends, before or after this one. A completed checkout can still be unpaid (bank debits
    settle later), and a state set from it would carry this event's time and make the slightly
    older ``customer.subscription.created`` look stale. Linking first lets that event find the
    account by subscription id even without our metadata.
    """
    checkout = read(StripeCheckout, obj)
    if isinstance(checkout, str):
        return _unusable("checkout", checkout)
    if checkout.mode != "subscription":
        return Applied(f"ignored: checkout in {checkout.mode} mode")
    customer_id, subscription_id = checkout.customer, checkout.subscription
    account_ref = checkout.account_ref
    # The reference our checkout session carries names the buyer; without one, known ids may.
    account_pk = await _find_account(
        session,
        subscription_id=None if account_ref is not None else subscription_id,
        customer_id=None if account_ref is not None else customer_id,
        account_ref=account_ref,
    )
    if account_pk is None:
        log.info("stripe: checkout of unknown customer %s ignored", customer_id)
        return Applied(f"ignored: unknown customer {customer_id or '(none)'}")
    row = await _locked_row(session, account_pk)
    if row is not None and row.stripe_subscription_id not in (None, subscription_id):
        # The account holds another subscription; the new one's events decide (they replace it
        # once live, see _superseded).
        return Applied(
            f"not linked: account holds {row.stripe_subscription_id}; "
            f"{subscription_id} is left to its subscription events",
            account_pk,
        )
    conflict = await _held_elsewhere(session, account_pk, customer_id, subscription_id)
    if conflict is not None:
        log.warning("stripe: checkout not linked to account %s: %s", account_pk, conflict)
        return Applied(f"ignored: {conflict}", account_pk)
    if row is None:
        # Free and incomplete until the subscription's events say otherwise.
        row = Subscription(account_pk=account_pk, tier=Tier.FREE.value, status="incomplete")
        session.add(row)
    row.stripe_subscription_id = subscription_id or row.stripe_subscription_id
    row.stripe_customer_id = customer_id or row.stripe_customer_id
    row.updated_at = _now()
    return Applied(f"linked {customer_id} {subscription_id}; {row.tier} {row.status}", account_pk)


async def apply_invoice_paid(
    session: AsyncSession, billing: StripeSettings, obj: Mapping[str, Any], as_of: dt.datetime
) -> Applied:
    """A paid invoice brings a past_due or unpaid subscription back to active (never a canceled
    one: Stripe does not revive those, a new subscription comes instead)."""
    return await _apply_invoice(session, billing, obj, as_of, paid=True)


async def apply_invoice_payment_failed(
    session: AsyncSession, billing: StripeSettings, obj: Mapping[str, Any], as_of: dt.datetime
) -> Applied:
    """A failed payment makes an active subscription past_due; grace runs from this event."""
    return await _apply_invoice(session, billing, obj, as_of, paid=False)


async def _apply_invoice(
    session: AsyncSession,
    billing: StripeSettings,
    obj: Mapping[str, Any],
    as_of: dt.datetime,
    *,
    paid: bool,
) -> Applied:
    invoice = read(StripeInvoice, obj)
    if isinstance(invoice, str):
        return _unusable("invoice", invoice)
    subscription_id = invoice.subscription_id
    if subscription_id is None:
        return Applied("ignored: invoice is not for a subscription")
    account_pk = await session.scalar(
        select(Subscription.account_pk).where(
            Subscription.stripe_subscription_id == subscription_id
        )
    )
    if account_pk is None:
        log.info("stripe: invoice of unknown subscription %s ignored", subscription_id)
        return Applied(f"ignored: unknown subscription {subscription_id}")
    row = await _locked_row(session, account_pk)
    before = _Before.of(row, _grace(billing))
    if row is None or row.stripe_subscription_id != subscription_id:
        return Applied(f"ignored: {subscription_id} is no longer the account's", account_pk)
    # Only these moves are the invoice's to make: a failed first payment leaves a subscription
    # incomplete (no grace for a tier never paid for), and nothing revives a canceled one.
    if paid and row.status not in ("past_due", "unpaid"):
        return Applied(f"no change: {row.tier} {row.status}", account_pk)
    if not paid and row.status not in ("active", "trialing", "past_due"):
        return Applied(f"ignored: payment failed on a {row.status} subscription", account_pk)
    status = "active" if paid else "past_due"
    stale = ordering.stale(row, as_of, status, same_subscription=True)
    if stale is not None:
        return Applied(f"ignored: {subscription_id} {stale}", account_pk)
    grace = _grace(billing)
    was_paid = ordering.was_paid(row, subscription_id, as_of, grace)
    if paid:
        row.past_due_since = None
    elif row.status != "past_due" or row.past_due_since is None:
        row.past_due_since = as_of
    row.status = status
    row.stripe_state_at = as_of
    row.updated_at = _now()
    first = not was_paid and ordering.is_paid(row, as_of, grace)
    changed = await _stripe_holds(session, row, before, grace)
    return Applied(f"{row.tier} {status}", account_pk, first, changed)


@dataclass(frozen=True, slots=True)
class _Before:
    """A row's entitlement before an event changed it."""

    state: tuple[str, str, dt.datetime | None] | None  # tier, status, past_due_since
    held: Tier  # the tier it gave then
    hand_set: bool

    @classmethod
    def of(cls, row: Subscription | None, grace: dt.timedelta) -> "_Before":
        held = entitled_tier(row, _now(), grace)
        if row is None:
            return cls(None, held, False)
        state = (row.tier, row.status, row.past_due_since)
        return cls(state, held, row.tier_source == TierSource.OPERATOR)


async def _stripe_holds(
    session: AsyncSession, row: Subscription, before: _Before, grace: dt.timedelta
) -> bool:
    """After an applied event: the row is Stripe's (a hand-set tier gives way, said in the log
    when it changes what the account holds); a changed entitlement bumps the account's
    credentials version. Whether it changed."""
    row.tier_source = TierSource.STRIPE.value
    if before.hand_set:
        holds = entitled_tier(row, _now(), grace)
        if holds is not before.held:
            log.warning(
                "stripe: account %s had the %s tier set by hand; Stripe's %s (%s) gives %s now",
                row.account_pk,
                before.held.value,
                row.stripe_subscription_id,
                row.status,
                holds.value,
            )
        else:
            log.info(
                "stripe: account %s's hand-set %s tier is Stripe's now",
                row.account_pk,
                holds.value,
            )
    changed = (row.tier, row.status, row.past_due_since) != before.state
    if changed:
        await revocation.bump(session, row.account_pk)
    return changed


async def _find_account(
    session: AsyncSession,
    *,
    subscription_id: str | None,
    customer_id: str | None,
    account_ref: int | None,
) -> int | None:
    for column, value in (
        (Subscription.stripe_subscription_id, subscription_id),
        (Subscription.stripe_customer_id, customer_id),
    ):
        if value is not None:
            found = await session.scalar(select(Subscription.account_pk).where(column == value))
            if found is not None:
                return found
    if account_ref is None:
        return None
    return await session.scalar(select(Account.pk).where(Account.pk == account_ref))


async def _locked_row(session: AsyncSession, account_pk: int) -> Subscription | None:
    """The account's row, read fresh under a lock on the account.

    PostgreSQL: FOR UPDATE on the account serialises two events for one account (even when it
    has no subscription row yet), so neither overwrites the other's state unseen. SQLite has no
    row locks; there the caller's earlier write already holds the database's write lock.
    """
    await session.execute(select(Account.pk).where(Account.pk == account_pk).with_for_update())
    return await session.get(Subscription, account_pk, populate_existing=True, with_for_update=True)


async def _held_elsewhere(
    session: AsyncSession, account_pk: int, customer_id: str | None, subscription_id: str | None
) -> str | None:
    """Which of these Stripe ids another account holds (they are unique across rows)."""
    for column, value in (
        (Subscription.stripe_customer_id, customer_id),
        (Subscription.stripe_subscription_id, subscription_id),
    ):
        if value is not None:
            other = await session.scalar(
                select(Subscription.account_pk).where(
                    column == value, Subscription.account_pk != account_pk
                )
            )
            if other is not None:
                return f"{value} belongs to account {other}"
    return None


def _stored_status(status: str) -> str:
    status = _STORED_STATUS.get(status, status)
    return status if len(status) <= _STATUS_WIDTH else "unknown"


def _grace(billing: StripeSettings) -> dt.timedelta:
    return dt.timedelta(days=billing.past_due_grace_days)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

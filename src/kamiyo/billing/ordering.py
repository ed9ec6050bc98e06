"""Which of two states of one subscription wins, and whether an account held a paid tier.

Ordering: Stripe delivers in no particular order and redelivers. A row keeps the time of the
Stripe state it holds (``stripe_state_at``); an older event is stale and changes nothing.
``created`` has one-second resolution, so two events of one subscription can share a second
(``created`` as incomplete and ``updated`` to active; ``updated`` to past_due and
``invoice.payment_failed``). At such a tie the later arrival applies unless its status is
earlier in a subscription's life than the stored one (``STATUS_ORDER``): within one second the
later stage is the likelier truth, and a cancellation is never undone by a straggler. Favouring
past_due over active at a tie costs nothing lasting: grace keeps the tier, and the next
``invoice.paid`` restores active.
"""

import datetime as dt

from kamiyo.access.accounts import TierSource, entitled_tier
from kamiyo.billing.stripe_objects import SOLD
from kamiyo.db.tables import Subscription
from kamiyo.tiers import Tier

# Subscriptions in force: paying, trialling, or within their payment grace.
LIVE = frozenset({"active", "trialing", "past_due"})
# States a subscription reaches only after it was once in force: leaving them for active is a
# recovery, not a first activation.
ONCE_ACTIVE = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})
# A subscription's life: incomplete -> trialing -> active -> past_due -> unpaid -> canceled.
STATUS_ORDER = {
    "incomplete": 0,
    "trialing": 1,
    "active": 2,
    "paused": 3,
    "past_due": 3,
    "unpaid": 4,
    "canceled": 5,
    "expired": 5,
}


def rank(tier: Tier | None) -> int:
    """A tier's place in the order, below free when there is none."""
    return tier.rank if tier is not None else -1


def superseded(
    row: Subscription, subscription_id: str, status: str, tier: Tier | None
) -> str | None:
    """Why an event of a subscription other than the account's must not replace it, if so.

    A resubscription (new id, same account) replaces a subscription that is no longer in force;
    a second live one replaces it only at an equal or higher tier, so the better of two paid
    subscriptions wins and a late event of an ended one never takes over.
    """
    held = row.stripe_subscription_id
    if status not in LIVE:
        return f"{subscription_id} is {status}; the account holds {held}"
    hand_set = row.tier_source == TierSource.OPERATOR  # Stripe wins over a hand-set tier
    if (
        row.status in LIVE
        and not hand_set
        and rank(tier) < rank(Tier(row.tier) if row.tier in SOLD else None)
    ):
        return f"{subscription_id} ranks below {held}, which the account holds"
    return None


def stale(
    row: Subscription | None, as_of: dt.datetime, status: str, *, same_subscription: bool
) -> str | None:
    """Why an event at ``as_of`` must not overwrite the row's state (see the module notes)."""
    if row is None or row.stripe_state_at is None:
        return None
    if as_of < row.stripe_state_at:
        return f"out of order: older than the state of {row.stripe_state_at.isoformat()}"
    if (
        as_of == row.stripe_state_at
        and same_subscription
        and STATUS_ORDER.get(status, 0) < STATUS_ORDER.get(row.status, 0)
    ):
        return f"{status} in the same second as {row.status}, which comes later"
    return None


def was_paid(
    row: Subscription | None, subscription_id: str, as_of: dt.datetime, grace: dt.timedelta
) -> bool:
    """Whether the account held a paid tier before: now, or earlier on this same subscription."""
    if row is None:
        return False
    if is_paid(row, as_of, grace):
        return True
    return (
        row.stripe_subscription_id == subscription_id
        and row.status in ONCE_ACTIVE
        and row.tier != Tier.FREE
    )


def is_paid(row: Subscription, as_of: dt.datetime, grace: dt.timedelta) -> bool:
    return entitled_tier(row, as_of, grace) is not Tier.FREE

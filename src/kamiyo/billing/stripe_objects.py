"""Reading Stripe's objects as webhooks and the API deliver them: ids that may be expanded
objects, Unix times, metadata, the places newer API versions moved things to, and which of our
tiers a subscription's items sell."""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kamiyo.config import StripeSettings
from kamiyo.tiers import Tier

SOLD = frozenset(tier.value for tier in Tier)  # names a configured price may carry


def cancels_at_period_end(obj: Mapping[str, Any], period_end: dt.datetime | None) -> bool:
    # Newer Stripe flows (e.g. the customer portal) may set cancel_at to the period end instead.
    if obj.get("cancel_at_period_end") is True:
        return True
    cancel_at = stripe_time(obj.get("cancel_at"))
    return cancel_at is not None and period_end is not None and cancel_at <= period_end


def invoice_subscription(obj: Mapping[str, Any]) -> str | None:
    # Since API "basil" an invoice names its subscription under parent.subscription_details.
    parent = obj.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    if isinstance(details, Mapping):
        found = object_id(details.get("subscription"))
        if found is not None:
            return found
    return object_id(obj.get("subscription"))


def object_id(value: Any) -> str | None:
    """An id field: the id itself, or the object when the event expanded it."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def account_pk_in(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def stripe_time(value: Any) -> dt.datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def tier_for_price(billing: StripeSettings, price_id: str | None) -> Tier | None:
    """The paid tier a Stripe price sells (``billing.prices`` read backwards)."""
    if not price_id:
        return None
    for name, configured in billing.prices.items():
        if configured == price_id and name in SOLD and name != Tier.FREE:
            return Tier(name)
    return None


@dataclass(frozen=True, slots=True)
class PricedItem:
    price_id: str | None
    tier: Tier | None
    period_end: dt.datetime | None


def deciding_item(billing: StripeSettings, obj: Mapping[str, Any]) -> PricedItem:
    """The item that sets the tier: the highest tier we sell among the items, else the first.

    Since API "basil" the period end lives on each item; older versions had it on the
    subscription, which stays the fallback.
    """
    fallback_end = stripe_time(obj.get("current_period_end"))
    items = obj.get("items")
    entries = items.get("data") if isinstance(items, Mapping) else None
    found: list[PricedItem] = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping):
            price_id = object_id(entry.get("price"))
            end = stripe_time(entry.get("current_period_end")) or fallback_end
            found.append(PricedItem(price_id, tier_for_price(billing, price_id), end))
    known = [item for item in found if item.tier is not None]
    if known:
        return max(known, key=lambda item: item.tier.rank if item.tier is not None else -1)
    return found[0] if found else PricedItem(None, None, fallback_end)

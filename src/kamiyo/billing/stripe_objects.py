"""Reading Stripe's objects as webhooks and the API deliver them: ids that may be expanded
objects, Unix times, metadata, the places newer API versions moved things to, and which of our
tiers a subscription's items sell.

Each object is read through a model of just the fields we use (``read``), before anything of
it reaches the database or a log line. Other fields are not looked at. A field we use must be
what Stripe documents and fit where it goes: ids printable text no wider than their columns
(PostgreSQL refuses NUL, lone surrogates and over-long values with an error), times whole Unix
seconds in ``0..UNIX_TIME_MAX``, flags booleans. An object that breaks this is not Stripe's own
(Stripe sends none), so nothing of it is applied: the caller says so in one line and moves on.

Account references (``client_reference_id``, ``metadata.account_pk``) are the exception: any
integration on the Stripe account may set them, so a value that is not one of our pks (not a
number, or outside 1..``INTEGER_MAX``) is simply not ours and reads as no reference.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
)

from kamiyo.config import StripeSettings
from kamiyo.db.bounds import INTEGER_MAX, UNIX_TIME_MAX, printable, text_width
from kamiyo.db.tables import Subscription
from kamiyo.tiers import Tier

SOLD = frozenset(tier.value for tier in Tier)  # names a configured price may carry


def _expanded_id(value: Any) -> Any:
    # An id field holds the object itself when the event or API call expanded it.
    return value.get("id") if isinstance(value, dict) else value


def _account_pk(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
        return number if 1 <= number <= INTEGER_MAX else None
    return None


# Ids, statuses, modes: what the subscriptions columns for Stripe's ids hold. (A status too
# long for its own, shorter column is stored as "unknown".)
StripeText = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=text_width(Subscription.stripe_customer_id)),
    AfterValidator(printable),
]
StripeRef = Annotated[StripeText, BeforeValidator(_expanded_id)]  # an id, or its expanded object
StripeTime = Annotated[int, Strict(), Field(ge=0, le=UNIX_TIME_MAX)]
AccountRef = Annotated[int | None, BeforeValidator(_account_pk)]
Flag = Annotated[bool, Strict()]


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True)


class Metadata(_Read):
    account_pk: AccountRef = None  # what our checkout sessions write


class _Item(_Read):
    price: StripeRef | None = None
    current_period_end: StripeTime | None = None


class _Items(_Read):
    data: list[_Item] = []


class StripeSubscription(_Read):
    id: StripeText
    status: StripeText
    customer: StripeRef | None = None
    metadata: Metadata | None = None
    current_period_end: StripeTime | None = None  # before API "basil"; on each item since
    cancel_at: StripeTime | None = None
    cancel_at_period_end: Flag | None = None
    items: _Items | None = None

    @property
    def account_ref(self) -> int | None:
        return self.metadata.account_pk if self.metadata else None


class StripeCheckout(_Read):
    mode: StripeText | None = None
    customer: StripeRef | None = None
    subscription: StripeRef | None = None
    client_reference_id: AccountRef = None
    metadata: Metadata | None = None

    @property
    def account_ref(self) -> int | None:
        if self.client_reference_id is not None:
            return self.client_reference_id
        return self.metadata.account_pk if self.metadata else None


class _SubscriptionDetails(_Read):
    subscription: StripeRef | None = None


class _InvoiceParent(_Read):
    subscription_details: _SubscriptionDetails | None = None


class StripeInvoice(_Read):
    parent: _InvoiceParent | None = None  # since API "basil"
    subscription: StripeRef | None = None  # before it

    @property
    def subscription_id(self) -> str | None:
        details = self.parent.subscription_details if self.parent else None
        if details is not None and details.subscription is not None:
            return details.subscription
        return self.subscription


Model = TypeVar("Model", bound=BaseModel)


def read(model: type[Model], obj: Any) -> Model | str:
    """``obj`` as ``model``, or why it cannot be: the first wrong field and what is wrong with
    it, never its value (which may be anything, of any length)."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"]) or "the object"
        what = f"no {where}" if first["type"] == "missing" else f"{where}: {first['msg']}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return what + more


def stripe_time(value: int | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def cancels_at_period_end(subscription: StripeSubscription, period_end: dt.datetime | None) -> bool:
    # Newer Stripe flows (e.g. the customer portal) may set cancel_at to the period end instead.
    if subscription.cancel_at_period_end is True:
        return True
    cancel_at = stripe_time(subscription.cancel_at)
    return cancel_at is not None and period_end is not None and cancel_at <= period_end


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


def deciding_item(billing: StripeSettings, subscription: StripeSubscription) -> PricedItem:
    """The item that sets the tier: the highest tier we sell among the items, else the first.

    Since API "basil" the period end lives on each item; older versions had it on the
    subscription, which stays the fallback.
    """
    fallback_end = stripe_time(subscription.current_period_end)
    items = subscription.items.data if subscription.items else []
    found = [
        PricedItem(
            item.price,
            tier_for_price(billing, item.price),
            stripe_time(item.current_period_end) or fallback_end,
        )
        for item in items
    ]
    known = [item for item in found if item.tier is not None]
    if known:
        return max(known, key=lambda item: item.tier.rank if item.tier is not None else -1)
    return found[0] if found else PricedItem(None, None, fallback_end)

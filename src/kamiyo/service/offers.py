"""What a free-tier answer offers: pay for this call, or subscribe, for current data and more.

An anonymous call to a priced tool the free tier unlocks is answered on the free tier
(access/account_gate.py), never asked to pay first; its answer carries this offer under
``OFFER_FIELD``, declared in every such tool's output schema (MCP) and 200 answer (REST). It is
short and machine-readable: the price, the networks (CAIP-2), how to pay, the subscription URL,
and x402's PaymentRequired for this very call, so that an x402 client can sign one of its
offers and call again without a round trip for a 402.
"""

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from kamiyo.payments.prices import PAID_MAX_RESULTS, usd
from kamiyo.service.catalogue import Operation
from kamiyo.tiers import TIERS, Tier

if TYPE_CHECKING:  # the payment checks (solders, x402) load only where payments are taken
    from kamiyo.payments.outcomes import Quote

# The answer's key for the offer (beside the operation's own fields).
OFFER_FIELD = "paid_offer"

HOW_TO_PAY = (
    "Call again with a payment signed for one of payment_required.accepts: over MCP in "
    'params._meta["x402/payment"], over REST in the PAYMENT-SIGNATURE header. Nothing is '
    "charged unless the call answers."
)


class PaidOffer(BaseModel):
    """On an answer given on the free tier: what a payment or a subscription adds."""

    message: str = Field(description="One sentence: what this answer is, and what paying adds.")
    tier: str = Field(description="The tier this answer was given on.")
    data_delay_hours: int = Field(description="Incidents newer than this were withheld.")
    max_results: int = Field(description="The most records this tier returns a call.")
    price_usd: str = Field(description='This call paid for on its own, e.g. "$0.01".')
    amount: str = Field(description="The same in atomic USDC units (6 decimals).")
    networks: list[str] = Field(description="Where it can be paid (CAIP-2 ids).")
    paid_max_results: int = Field(description="The most records a paid call returns.")
    how_to_pay: str
    payment_required: dict[str, Any] = Field(
        description="x402 v2 PaymentRequired for this call: sign one of its accepts."
    )
    upgrade_url: str | None = Field(default=None, description="Where to subscribe.")


def paid_offer(quote: "Quote", upgrade_url: str | None) -> PaidOffer:
    free = TIERS[Tier.FREE]
    price = usd(quote.amount)
    subscribe = f", or subscribe at {upgrade_url}" if upgrade_url else ", or subscribe"
    networks = list(dict.fromkeys(r.network for r in quote.required.accepts))
    return PaidOffer(
        message=f"Answered on the free tier: incidents older than {free.data_delay_hours} h, "
        f"at most {free.max_results} results. For current data and up to {PAID_MAX_RESULTS} "
        f"results, pay {price} in USDC for this call (x402){subscribe}.",
        tier=Tier.FREE.value,
        data_delay_hours=free.data_delay_hours,
        max_results=free.max_results,
        price_usd=price,
        amount=str(quote.amount),
        networks=networks,
        paid_max_results=PAID_MAX_RESULTS,
        how_to_pay=HOW_TO_PAY,
        payment_required=quote.required.model_dump(mode="json", by_alias=True, exclude_none=True),
        upgrade_url=upgrade_url,
    )


def answer_model(operation: Operation[Any, Any], payments: bool) -> type[BaseModel]:
    """The model an operation's answers are declared with: its output, plus the offer when
    x402 is on and its answers may carry one."""
    may_offer = operation.price is not None and Tier.FREE.includes(operation.tier)
    return _offered(operation.output) if payments and may_offer else operation.output


# One subclass per output model, made once: its schema is read on every tools/list.
_OFFERED: dict[type[BaseModel], type[BaseModel]] = {}


def _offered(output: type[BaseModel]) -> type[BaseModel]:
    if (known := _OFFERED.get(output)) is not None:
        return known
    # A subclass under the same name: the schema stays the operation's, with one more field.
    fields: dict[str, Any] = {
        OFFER_FIELD: (
            PaidOffer | None,
            Field(default=None, description="On a free-tier answer: what paying adds."),
        )
    }
    offered = create_model(output.__name__, __base__=output, __module__=output.__module__, **fields)
    offered.__doc__ = output.__doc__
    _OFFERED[output] = offered
    return offered

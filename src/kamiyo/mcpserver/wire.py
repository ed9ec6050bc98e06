"""What KAMIYO reads and writes in MCP's ``_meta`` and tool arguments: the MCP wire constants.

x402 over MCP (``transports-v2/mcp.md``): the payment arrives in
``params._meta["x402/payment"]`` (clients in the wild also use ``x402.payment``, a JSON string
or base64 of it) and the receipt leaves in ``result._meta["x402/payment-response"]``. A priced
tool states its price in its own ``_meta["kamiyo/price"]``. Paying by plain Solana transfer is
named in two tool arguments; buying a pack of calls, or paying from one, in a tool argument or
in ``_meta`` (``kamiyo/bundle-calls``, ``kamiyo/bundle-token``).
"""

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from kamiyo.intel.models import QueryModel
from kamiyo.payments.bundles import BundleAsk
from kamiyo.payments.outcomes import RawPayment
from kamiyo.payments.transfers import TransferClaim

PAYMENT_KEYS = ("x402/payment", "x402.payment")
RECEIPT_KEY = "x402/payment-response"
PRICE_KEY = "kamiyo/price"
BUNDLE_TOKEN_KEY = "kamiyo/bundle-token"  # noqa: S105 (a key name)
BUNDLE_CALLS_KEY = "kamiyo/bundle-calls"


def payment_in_meta(meta: Mapping[str, Any] | None) -> RawPayment | None:
    """The payment a tool call carries in ``_meta``, as sent, if any."""
    for key in PAYMENT_KEYS:
        value = (meta or {}).get(key)
        if isinstance(value, Mapping | str):
            return RawPayment(value)
        if value is not None:  # a number or a list: say so when it is read
            return RawPayment(str(value))
    return None


class TransferArguments(QueryModel):
    """The two arguments a call takes when it is paid by plain Solana transfer."""

    x402_payment_signature: str | None = Field(
        default=None,
        max_length=100,
        description="Only to pay by Solana transfer: the signature of the USDC transfer made "
        "with the memo an unpaid call of this tool gave.",
    )
    x402_payment_reference: str | None = Field(
        default=None,
        max_length=64,
        description="Only to pay by Solana transfer: the reference given with that memo.",
    )

    def claim(self) -> TransferClaim | None:
        """The transfer named as the payment, if any (half of one is refused when read)."""
        if self.x402_payment_signature is None and self.x402_payment_reference is None:
            return None
        return TransferClaim(self.x402_payment_signature or "", self.x402_payment_reference or "")


TRANSFER_ARGUMENTS = tuple(TransferArguments.model_fields)


class BundleArguments(QueryModel):
    """The two arguments a priced tool takes with x402 on: buy a pack of calls, or pay from one."""

    x402_bundle_calls: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Only to buy a pack of calls of this tool with one x402 payment: its size "
        "(see get_pricing). The call is then quoted the pack's price.",
    )
    x402_bundle_token: str | None = Field(
        default=None,
        max_length=64,
        description="Only to pay from a pack bought earlier: the bundle.token its paid answer "
        "gave.",
    )

    def ask(self, meta: Mapping[str, Any] | None) -> BundleAsk | None:
        """What the call asks of bundles, from these arguments or else the request's _meta."""
        token, buy = self.x402_bundle_token, self.x402_bundle_calls
        given = meta or {}
        if token is None and isinstance(given.get(BUNDLE_TOKEN_KEY), str):
            token = given[BUNDLE_TOKEN_KEY]
        if buy is None and type(given.get(BUNDLE_CALLS_KEY)) is int:
            buy = given[BUNDLE_CALLS_KEY]
        return BundleAsk(token, buy) if token is not None or buy is not None else None


BUNDLE_ARGUMENTS = tuple(BundleArguments.model_fields)

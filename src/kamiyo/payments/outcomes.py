"""What taking a payment can come to: a quote, a hold, a refusal, or an answer given before."""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kamiyo.payments import journal
from kamiyo.payments.transfers import TransferClaim, VerifiedTransfer

if TYPE_CHECKING:  # x402 loads where payments are taken, not wherever these types are named
    from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse


@dataclass(frozen=True, slots=True)
class RawPayment:
    """An x402 payment as the client sent it: a PaymentPayload object, or a JSON or base64
    string of one (x402 v1 or v2). It is read against the offer once the call's price is known,
    since a v1 payload only names the scheme and network it pays on."""

    sent: Mapping[str, Any] | str


# What a call may carry as its payment: an x402 payload, or a Solana transfer named by signature.
Payment = RawPayment | TransferClaim


@dataclass(frozen=True, slots=True)
class Quote:
    """What one call costs and every way to pay for it, as x402's PaymentRequired says."""

    tool: str  # what is paid for (an operation's name)
    amount: int
    required: "PaymentRequired"
    pack_calls: int | None = None  # a pack of this many calls, bought with one payment


@dataclass(frozen=True, slots=True)
class Hold:
    """A verified payment held for one call: settle it after the tool succeeds, else release."""

    held: journal.Held
    quote: Quote
    network: str
    payer: str | None
    # An x402 payment to settle, or else a Solana transfer already on chain (nothing to send).
    exact: "tuple[PaymentPayload, PaymentRequirements] | None" = None
    transfer: VerifiedTransfer | None = None


@dataclass(frozen=True, slots=True)
class Declined:
    """The payment cannot pay for this call; ``required`` tells the client how to pay again."""

    reason: str  # x402's invalid/error reason, or ours (see REASONS)
    message: str  # one sentence for a person or an LLM
    required: "PaymentRequired"


@dataclass(frozen=True, slots=True)
class Answered:
    """The same payment already bought this call (the same payment id, or a settlement that
    landed late): its answer, not a charge."""

    answer: dict[str, Any]
    receipt: "SettleResponse | None" = None
    payment_pk: int | None = None  # the journal's row, to tell the bundle it bought again
    # The payment's first paid answer: its settlement landed after the call that bought it was
    # refused as settlement_confirming (pending.py), so this answer has not been metered yet.
    first_time: bool = False


@dataclass(frozen=True, slots=True)
class Settled:
    """The payment was taken: the chain's receipt."""

    receipt: "SettleResponse"


@dataclass(frozen=True, slots=True)
class NotSettled:
    """The payment was not taken, so the answer is withheld; ``reason`` is x402's or ours."""

    reason: str


# Our reason codes, beside x402's own (which the facilitators return).
REASONS = {
    "payment_required": "this call needs a payment",
    "invalid_payload": "the payment could not be read",
    "unsupported_requirements": "the payment does not match anything this call accepts",
    "payment_in_use": "this payment is being used by another call right now; retry shortly",
    "payment_already_used": "this payment already paid for a call; sign a new one",
    "payment_id_conflict": "this payment id was already used with a different payment",
    "settlement_failed": "the payment could not be settled, so the answer is withheld",
}


def decline(quote: Quote, reason: str, detail: str | None = None) -> Declined:
    message = detail or REASONS.get(reason, reason.replace("_", " "))
    required = quote.required.model_copy(update={"error": reason})
    return Declined(reason, f"Payment not accepted for {quote.tool}: {message}.", required)


def digest(value: Any) -> str:
    """sha256 of a value's canonical JSON: how the journal names payments and payloads."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()

"""Taking a payment for one call: quote -> accept (read, match, hold, verify) -> settle or release.

The order is the x402 one: verify before the tool runs, settle only after it succeeded, and
never hand over an answer whose payment did not settle. Every step that can refuse says why in
a sentence and an x402 reason code; nothing is taken from the payer unless ``settle`` succeeds.
"""

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    declare_payment_identifier_extension,
    extract_and_validate_payment_identifier,
)
from x402.schemas import (
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResponse,
    VerifyResponse,
)

from kamiyo.config import Settings
from kamiyo.payments import journal, metrics
from kamiyo.payments.facilitators import Facilitator, LocalFacilitator, RemoteFacilitator
from kamiyo.payments.networks import SCHEME, AcceptedNetwork, family_of
from kamiyo.payments.prices import price_of, usd
from kamiyo.payments.wire import MalformedPaymentError, read_payment

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Quote:
    """What one call costs and every way to pay for it, as x402's PaymentRequired says."""

    tool: str
    amount: int
    required: PaymentRequired


@dataclass(frozen=True, slots=True)
class Hold:
    """A verified payment held for one call: settle it after the tool succeeds, else release."""

    held: journal.Held
    quote: Quote
    payload: PaymentPayload
    requirements: PaymentRequirements
    payer: str | None


@dataclass(frozen=True, slots=True)
class Declined:
    """The payment cannot pay for this call; ``required`` tells the client how to pay again."""

    reason: str  # x402's invalid/error reason, or ours (see REASONS)
    message: str  # one sentence for a person or an LLM
    required: PaymentRequired


@dataclass(frozen=True, slots=True)
class Answered:
    """The same payment (same payment id) already bought this call: its answer, not a charge."""

    answer: dict[str, Any]
    receipt: dict[str, Any] = field(default_factory=dict)


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


class Cashier:
    def __init__(self, settings: Settings, facilitator: Facilitator) -> None:
        self._networks: list[AcceptedNetwork] = list(settings.x402_networks)
        self._facilitator = facilitator
        self._max_timeout_s = settings.x402_max_timeout_s
        self._upgrade_url = settings.upgrade_url

    @property
    def networks(self) -> list[AcceptedNetwork]:
        return self._networks

    async def start(self) -> None:
        await self._facilitator.start()

    def requirements(self, amount: int) -> list[PaymentRequirements]:
        return [
            PaymentRequirements(
                scheme=SCHEME,
                network=network.network,
                asset=network.usdc,
                amount=str(amount),
                pay_to=network.pay_to,
                max_timeout_seconds=self._max_timeout_s,
                extra=self._extra(network),
            )
            for network in self._networks
        ]

    def _extra(self, network: AcceptedNetwork) -> dict[str, Any]:
        extra = dict(self._facilitator.extra_for(network.network))
        if network.family == "evm":
            extra.update(name=network.eip712_name, version=network.eip712_version)
        return extra

    def quote(
        self, tool: str, arguments: Mapping[str, Any], resource_url: str, description: str = ""
    ) -> Quote | None:
        """The price of this call and how to pay it, or None when the tool is free."""
        amount = price_of(tool, arguments)
        if amount is None:
            return None
        required = PaymentRequired(
            x402_version=2,
            error=REASONS["payment_required"],
            resource=ResourceInfo(
                url=resource_url, description=description or None, mime_type="application/json"
            ),
            accepts=self.requirements(amount),
            extensions={PAYMENT_IDENTIFIER: declare_payment_identifier_extension()},
        )
        return Quote(tool, amount, required)

    def ask(self, quote: Quote) -> str:
        """The sentence an unpaid call gets: the price, how to pay, or how to subscribe."""
        where = " or ".join(network.label for network in self._networks)
        subscribe = f", or subscribe at {self._upgrade_url}" if self._upgrade_url else ""
        return (
            f"{quote.tool} costs {usd(quote.amount)} in USDC per call ({where}). Pay with an "
            f"x402 client, which signs one of the offers in this answer and sends it again "
            f"with the call{subscribe}."
        )

    def decline(self, quote: Quote, reason: str, detail: str | None = None) -> Declined:
        message = detail or REASONS.get(reason, reason.replace("_", " "))
        required = quote.required.model_copy(update={"error": reason})
        sentence = f"Payment not accepted for {quote.tool}: {message}."
        return Declined(reason, sentence, required)

    def not_settled(self, hold: Hold, reason: str) -> Declined:
        """The answer to a call whose payment failed to settle: how to pay again, and why."""
        detail = f"{REASONS['settlement_failed']} ({reason.replace('_', ' ')})"
        return self.decline(hold.quote, reason, detail)

    async def accept(
        self, raw: Any, quote: Quote, sessions: async_sessionmaker[AsyncSession]
    ) -> Hold | Declined | Answered:
        try:
            payload = read_payment(raw, quote.required.accepts)
        except MalformedPaymentError as exc:
            return self.decline(quote, "invalid_payload", str(exc))
        requirements = _matching(payload, quote.required.accepts)
        if isinstance(requirements, str):
            return self.decline(quote, "unsupported_requirements", requirements)
        payment_id, validation = extract_and_validate_payment_identifier(payload)
        if not validation.valid:
            return self.decline(quote, "invalid_payload", "; ".join(validation.errors))
        entry = journal.Entry(
            payment_key=payment_key(payload),
            payload_hash=_digest(payload.payload),
            payment_id=payment_id,
            tool=quote.tool,
            network=requirements.network,
            payer=None,
            amount=quote.amount,
        )
        held = await journal.hold(sessions, entry)
        if isinstance(held, journal.Taken):
            return self._taken(quote, held)
        started = time.perf_counter()
        verdict = await self._verify(payload, requirements)
        network = requirements.network
        metrics.VERIFICATION_SECONDS.labels(network).observe(time.perf_counter() - started)
        result = "valid" if verdict.is_valid else verdict.invalid_reason or "invalid_payment"
        metrics.VERIFICATIONS.labels(network, result).inc()
        if not verdict.is_valid:
            reason = verdict.invalid_reason or "invalid_payment"
            await journal.failed(sessions, held, reason)
            log.info("payment for %s refused: %s %s", quote.tool, reason, verdict.invalid_message)
            return self.decline(quote, reason, _explain(reason, verdict.invalid_message))
        return Hold(held, quote, payload, requirements, verdict.payer)

    def _taken(self, quote: Quote, taken: journal.Taken) -> Declined | Answered:
        if taken.state == "conflict":
            return self.decline(quote, "payment_id_conflict")
        if taken.state == "settled" and taken.answer is not None:
            return Answered(taken.answer, taken.receipt or {})
        if taken.state == "settled":
            return self.decline(quote, "payment_already_used")
        return self.decline(quote, "payment_in_use")

    async def _verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResponse:
        try:
            return await self._facilitator.verify(payload, requirements)
        except Exception as exc:  # a facilitator or RPC outage: refuse, charge nothing
            log.warning("payment verification failed to run: %s", exc)
            return VerifyResponse(is_valid=False, invalid_reason="verification_unavailable")

    async def settle(
        self, hold: Hold, answer: dict[str, Any] | None, sessions: async_sessionmaker[AsyncSession]
    ) -> dict[str, Any] | str:
        """Settle a held payment; the receipt, or the reason it did not settle."""
        try:
            result = await self._facilitator.settle(hold.payload, hold.requirements)
        except Exception as exc:
            log.warning("settlement failed to run: %s", exc)
            result = SettleResponse(
                success=False,
                error_reason="settlement_unavailable",
                transaction="",
                network=hold.requirements.network,
            )
        network = hold.requirements.network
        if not result.success:
            reason = result.error_reason or "settlement_failed"
            log.warning("settlement refused: %s %s", reason, result.error_message)
            metrics.SETTLEMENTS.labels(network, reason).inc()
            await journal.failed(sessions, hold.held, reason)
            return reason
        metrics.SETTLEMENTS.labels(network, "settled").inc()
        metrics.USDC_RECEIVED.labels(network).inc(hold.quote.amount)
        receipt = result.model_dump(mode="json", exclude_none=True)
        await journal.settled(
            sessions, hold.held, result.payer or hold.payer, result.transaction, receipt, answer
        )
        log.info(
            "settled %s on %s: %s",
            usd(hold.quote.amount),
            hold.requirements.network,
            result.transaction,
        )
        return receipt

    async def release(
        self, hold: Hold, reason: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """The call failed before settlement: nothing is taken, the payment may be tried again."""
        await journal.failed(sessions, hold.held, reason)


def _matching(
    payload: PaymentPayload, accepts: list[PaymentRequirements]
) -> PaymentRequirements | str:
    """Our offer the payment answers, or why it answers none (checked again when verifying)."""
    offered = payload.accepted
    ours = next(
        (r for r in accepts if (r.scheme, r.network) == (offered.scheme, offered.network)), None
    )
    if ours is None:
        networks = ", ".join(sorted({r.network for r in accepts}))
        return (
            f"it is an {offered.scheme} payment on {offered.network}; "
            f"this call takes {SCHEME} payments on {networks}"
        )
    if not _same_address(offered.asset, ours.asset, ours.network):
        return f"it pays in asset {offered.asset}; this call takes USDC ({ours.asset})"
    if not _same_address(offered.pay_to, ours.pay_to, ours.network):
        return f"it pays {offered.pay_to}; payments for this call go to {ours.pay_to}"
    if offered.amount != ours.amount:
        return (
            f"it is for {offered.amount} atomic units; "
            f"this call costs {ours.amount} ({usd(int(ours.amount))})"
        )
    return ours


def _same_address(a: str, b: str, network: str) -> bool:
    # EVM addresses are hex, written in either case; Solana's base58 is case-sensitive.
    return a.lower() == b.lower() if family_of(network) == "evm" else a == b


def payment_key(payload: PaymentPayload) -> str:
    """What the chain can spend only once, so the journal can refuse it a second time."""
    authorization = payload.payload.get("authorization")
    if isinstance(authorization, Mapping):  # EIP-3009: the payer's nonce on this token
        parts = (
            payload.accepted.network,
            payload.accepted.asset.lower(),
            str(authorization.get("from", "")).lower(),
            str(authorization.get("nonce", "")).lower(),
        )
        return _digest(list(parts))
    return _digest([payload.accepted.network, payload.payload])


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _explain(reason: str, detail: str | None) -> str:
    text = reason.replace("_", " ")
    return f"{text} ({detail[:160]})" if detail else text


def open_cashier(settings: Settings) -> Cashier | None:
    """The cashier for these settings, or None when x402 is off (no networks configured)."""
    if not settings.x402_networks:
        return None
    url = settings.x402_facilitator_url
    facilitator: Facilitator = RemoteFacilitator(url) if url else LocalFacilitator(settings)
    return Cashier(settings, facilitator)

"""Taking a payment for one call: quote -> accept (read, match, hold, verify) -> settle or release.

The order is the x402 one: verify before the tool runs, settle only after it succeeded, and
never hand over an answer whose payment did not settle. Every step that can refuse says why in
a sentence and an x402 reason code; nothing is taken from the payer unless ``settle`` succeeds.
"""

import logging
import time
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr
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

from kamiyo.chains import AcceptedNetwork, AddressFamily, family_of
from kamiyo.config import RedisSettings, X402Settings
from kamiyo.payments import journal, metrics
from kamiyo.payments.bundles import token_for
from kamiyo.payments.facilitators import Facilitator, LocalFacilitator, RemoteFacilitator
from kamiyo.payments.networks import SCHEME
from kamiyo.payments.outcomes import (
    REASONS,
    Answered,
    Declined,
    Hold,
    NotSettled,
    Payment,
    Quote,
    Settled,
    decline,
    digest,
)
from kamiyo.payments.pending import PendingSettlements, confirming
from kamiyo.payments.prices import BUNDLE_LIFETIME, Pack, Price, usd
from kamiyo.payments.settlements import CONFIRMING, RETRY_AFTER_S, reader_for
from kamiyo.payments.transfer_desk import TRANSFER_EXTENSION, TransferDesk
from kamiyo.payments.transfers import TransferClaim
from kamiyo.payments.wire import MalformedPaymentError, read_payment

log = logging.getLogger(__name__)

# Where a payment request lists the packs of calls a tool also sells.
BUNDLES_EXTENSION = "kamiyo/bundles"


class Cashier:
    def __init__(
        self,
        x402: X402Settings,
        facilitator: Facilitator,
        *,
        secret_key: SecretStr,
        upgrade_url: str | None = None,
    ) -> None:
        self._networks: list[AcceptedNetwork] = list(x402.networks)
        self._facilitator = facilitator
        self._max_timeout_s = x402.max_timeout_s
        self._upgrade_url = upgrade_url
        # Plain Solana transfers named by signature, on the first Solana network with RPC.
        transfer_network = next(
            (n for n in self._networks if n.family is AddressFamily.SOLANA and n.rpc_urls), None
        )
        secret = secret_key.get_secret_value()
        self._bundle_secret = secret.encode()
        self._desk = TransferDesk(transfer_network, secret) if transfer_network else None
        self._pending = PendingSettlements(reader_for(self._networks), self._bundle_secret)

    @property
    def takes_transfers(self) -> bool:
        return self._desk is not None

    async def start(self) -> None:
        await self._facilitator.start()
        if self._desk is not None:
            await self._desk.start()

    async def stop(self) -> None:
        await self._facilitator.stop()
        await self._pending.reader.aclose()
        if self._desk is not None:
            await self._desk.stop()

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
        self,
        name: str,
        price: Price,
        size: int | None,
        resource_url: str,
        pack: Pack | None = None,
    ) -> Quote:
        """What this call costs (``size``: the records it asks for; ``pack``: a pack of calls
        bought with it) and every way to pay it."""
        amount = pack.amount if pack is not None else price.for_size(size)
        extensions: dict[str, Any] = {PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}
        if price.packs:
            extensions[BUNDLES_EXTENSION] = _packs_offer(price)
        if self._desk is not None:
            extensions[TRANSFER_EXTENSION] = self._desk.offer(name, amount)
        required = PaymentRequired(
            x402_version=2,
            error=REASONS["payment_required"],
            resource=ResourceInfo(url=resource_url, description=None, mime_type="application/json"),
            accepts=self.requirements(amount),
            extensions=extensions,
        )
        return Quote(name, amount, required, pack.calls if pack is not None else None)

    def bundle_token(self, payment_pk: int) -> str:
        """The token of the bundle the payment in this journal row bought."""
        return token_for(self._bundle_secret, payment_pk)

    def ask(self, quote: Quote) -> str:
        """The sentence an unpaid call gets: the price, how to pay, or how to subscribe."""
        where = " or ".join(network.label for network in self._networks)
        subscribe = f" Or subscribe at {self._upgrade_url}." if self._upgrade_url else ""
        transfer = ""
        offer = (quote.required.extensions or {}).get(TRANSFER_EXTENSION)
        if isinstance(offer, dict):
            transfer = (
                f" Or, from a Solana wallet, send {offer['amount']} USDC units to "
                f"{offer['tokenAccount']} with the memo {offer['memo']} and call again naming "
                f"its signature and the reference {offer['reference']}."
            )
        packs = ""
        offered = (quote.required.extensions or {}).get(BUNDLES_EXTENSION)
        if isinstance(offered, dict) and quote.pack_calls is None:
            sizes = ", ".join(f"{pack['calls']} for {pack['usd']}" for pack in offered["packs"])
            packs = (
                f" Or buy a pack of calls with one payment ({sizes}): extensions"
                f"['{BUNDLES_EXTENSION}'] of this answer says how to ask for one."
            )
        cost = (
            f"A pack of {quote.pack_calls} {quote.tool} calls costs {usd(quote.amount)} in USDC"
            if quote.pack_calls is not None
            else f"{quote.tool} costs {usd(quote.amount)} in USDC per call"
        )
        return (
            f"{cost} ({where}). Pay with an x402 client, which signs one of the offers in this "
            f"answer and sends it again with the call.{packs}{transfer}{subscribe}"
        )

    def not_settled(self, hold: Hold, reason: str) -> Declined:
        """The answer to a call whose payment failed to settle: how to pay again, and why."""
        if reason == CONFIRMING:  # not failed: it may still be taken, so no new payment
            return confirming(hold.quote, RETRY_AFTER_S)
        detail = f"{REASONS['settlement_failed']} ({reason.replace('_', ' ')})"
        return decline(hold.quote, reason, detail)

    async def accept(
        self, payment: Payment, quote: Quote, sessions: async_sessionmaker[AsyncSession]
    ) -> Hold | Declined | Answered:
        if isinstance(payment, TransferClaim):
            if self._desk is None:
                return decline(quote, "PAYMENT_REQUIRED", "this server takes no Solana transfers")
            return await self._desk.accept(payment, quote, sessions)
        try:
            payload = read_payment(payment.sent, quote.required.accepts)
        except MalformedPaymentError as exc:
            return decline(quote, "invalid_payload", str(exc))
        # x402 clients echo every extension of the offer, our transfer offer's reference too;
        # it is nobody else's business (a facilitator's, say).
        extensions = {
            k: v for k, v in (payload.extensions or {}).items() if k != TRANSFER_EXTENSION
        }
        payload = payload.model_copy(update={"extensions": extensions or None})
        requirements = _matching(payload, quote.required.accepts)
        if isinstance(requirements, str):
            return decline(quote, "unsupported_requirements", requirements)
        payment_id, validation = extract_and_validate_payment_identifier(payload)
        if not validation.valid:
            return decline(quote, "invalid_payload", "; ".join(validation.errors))
        entry = journal.Entry(
            payment_key=payment_key(payload),
            payload_hash=digest(payload.payload),
            payment_id=payment_id,
            tool=quote.tool,
            network=requirements.network,
            amount=quote.amount,
        )
        held = await journal.hold(sessions, entry)
        if isinstance(held, journal.Taken) and held.state in ("pending", "landed"):
            # Sent before without an answer: the chain says first whether it was taken.
            retried = await self._pending.retried(held, quote, requirements.network, sessions)
            if retried is not None:
                return retried
            held = await journal.hold(sessions, entry)  # it never landed: a new try
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
            return decline(quote, reason, _explain(reason, verdict.invalid_message))
        return Hold(held, quote, requirements.network, verdict.payer, (payload, requirements))

    def _taken(self, quote: Quote, taken: journal.Taken) -> Declined | Answered:
        if taken.state == "conflict":
            return decline(quote, "payment_id_conflict")
        if taken.state == "settled" and taken.answer is not None:
            receipt = SettleResponse.model_validate(taken.receipt) if taken.receipt else None
            return Answered(taken.answer, receipt, taken.pk)
        if taken.state == "settled":
            return decline(quote, "payment_already_used")
        return decline(quote, "payment_in_use")

    async def _verify(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> VerifyResponse:
        try:
            return await self._facilitator.verify(payload, requirements)
        except Exception as exc:  # a facilitator or RPC outage: refuse, charge nothing
            log.warning("payment verification failed to run: %s", exc)
            return VerifyResponse(is_valid=False, invalid_reason="verification_unavailable")

    async def settle(
        self,
        hold: Hold,
        answer: Mapping[str, Any] | None,
        sessions: async_sessionmaker[AsyncSession],
    ) -> Settled | NotSettled:
        """Settle a held payment: its receipt, or the reason it did not settle."""
        if hold.exact is None:  # a transfer the payer already made: record it
            signature = hold.transfer.signature if hold.transfer else ""
            result = SettleResponse(
                success=True, payer=hold.payer, transaction=signature, network=hold.network
            )
        else:
            result = await self._settle_exact(*hold.exact)
        if await self._pending.keep(hold, result, answer, sessions):  # sent, no answer yet
            return NotSettled(CONFIRMING)
        if not result.success:
            reason = result.error_reason or "settlement_failed"
            log.warning("settlement refused: %s %s", reason, result.error_message)
            metrics.SETTLEMENTS.labels(hold.network, reason).inc()
            await journal.failed(sessions, hold.held, reason)
            return NotSettled(reason)
        metrics.SETTLEMENTS.labels(hold.network, "settled").inc()
        metrics.USDC_RECEIVED.labels(hold.network).inc(hold.quote.amount)
        receipt = result.model_dump(mode="json", exclude_none=True)
        await journal.settled(
            sessions,
            hold.held,
            result.payer or hold.payer,
            result.transaction,
            receipt,
            dict(answer) if answer is not None else None,
        )
        log.info("settled %s on %s: %s", usd(hold.quote.amount), hold.network, result.transaction)
        return Settled(result)

    async def _settle_exact(
        self, payload: PaymentPayload, requirements: PaymentRequirements
    ) -> SettleResponse:
        try:
            return await self._facilitator.settle(payload, requirements)
        except Exception as exc:
            log.warning("settlement failed to run: %s", exc)
            return SettleResponse(
                success=False,
                error_reason="settlement_unavailable",
                transaction="",
                network=requirements.network,
            )

    async def release(
        self, hold: Hold, reason: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """The call failed before settlement: nothing is taken, the payment may be tried again."""
        await journal.failed(sessions, hold.held, reason)


def _packs_offer(price: Price) -> dict[str, Any]:
    """The x402 extension that tells a client the packs it may buy instead of one call."""
    return {
        "packs": [
            {"calls": p.calls, "amount": str(p.amount), "usd": usd(p.amount)} for p in price.packs
        ],
        "maxResults": price.pack_max_results,
        "validDays": BUNDLE_LIFETIME.days,
        "buy": "Call again asking for a pack (MCP: the x402_bundle_calls argument or "
        "_meta['kamiyo/bundle-calls']; HTTP: the Kamiyo-Bundle-Calls header) to be quoted its "
        "price. The paid answer's bundle.token then pays for the pack's other calls "
        "(x402_bundle_token, _meta['kamiyo/bundle-token'] or the Kamiyo-Bundle-Token header).",
    }


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
        return digest(list(parts))
    return digest([payload.accepted.network, payload.payload])


def _explain(reason: str, detail: str | None) -> str:
    text = reason.replace("_", " ")
    return f"{text} ({detail[:160]})" if detail else text


def open_cashier(
    x402: X402Settings,
    *,
    secret_key: SecretStr,
    upgrade_url: str | None = None,
    redis: RedisSettings | None = None,
) -> Cashier | None:
    """The cashier for these settings, or None when x402 is off (no networks configured).

    ``redis``: where instances share what they must (the EVM relayer's nonces).
    """
    if not x402.networks:
        return None
    url = x402.facilitator_url
    facilitator: Facilitator = RemoteFacilitator(url) if url else LocalFacilitator(x402, redis)
    return Cashier(x402, facilitator, secret_key=secret_key, upgrade_url=upgrade_url)

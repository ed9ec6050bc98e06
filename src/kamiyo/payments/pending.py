"""The cashier's side of settlements whose outcome is unknown (settlements.py): keep them, and
answer a retry of the same payment as the chain says.

- kept: the settlement went out and no answer came; the journal holds it ``pending`` with its
  chain identity and the answer it bought; the caller is told ``settlement_confirming``: send the
  same payment again in a few seconds, not a new one (this one may still be taken).
- a retry: the chain is asked first. Landed: the call is answered as paid, once (the journal
  moves the row to settled; a further retry gets the usual replay refusal). Provably not landed:
  the row is failed, nothing was taken, the payment goes through as new (and the payer may sign
  another). Still unknown: ``settlement_confirming`` again, with how long to wait.
"""

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from x402.schemas import SettleResponse

from kamiyo.payments import bundles, journal, metrics
from kamiyo.payments.outcomes import Answered, Declined, Hold, Quote, decline
from kamiyo.payments.prices import BUNDLE_LIFETIME
from kamiyo.payments.settlements import (
    CONFIRMING,
    RETRY_AFTER_S,
    UNKNOWN_OUTCOMES,
    ChainReader,
    Landed,
    Lost,
    Resolution,
    as_json,
    from_json,
    identity_of,
)

log = logging.getLogger(__name__)

# Where a settlement_confirming refusal says what to do, under PaymentRequired.extensions.
SETTLEMENT_EXTENSION = "kamiyo/settlement"


def confirming(quote: Quote, retry_after_s: int) -> Declined:
    """The refusal of a call whose payment is being confirmed: retry the same payment later.

    It carries no offers (``accepts`` is empty): an x402 client that paid again on its own
    would be charged twice if the first payment lands."""
    detail = (
        f"the payment is being confirmed on chain; send the same payment again in "
        f"{retry_after_s} s, not a new one (this one may still be taken)"
    )
    declined = decline(quote, CONFIRMING, detail)
    extensions = {
        SETTLEMENT_EXTENSION: {
            "state": "confirming",
            "retryAfterSeconds": retry_after_s,
            "retryWith": "the same payment",
        }
    }
    required = declined.required.model_copy(update={"accepts": [], "extensions": extensions})
    return Declined(declined.reason, declined.message, required)


class PendingSettlements:
    def __init__(self, reader: ChainReader, bundle_secret: bytes) -> None:
        self.reader = reader
        self._bundle_secret = bundle_secret  # a late-landed pack's bundle gets its token

    async def keep(
        self,
        hold: Hold,
        result: SettleResponse,
        answer: Mapping[str, Any] | None,
        sessions: async_sessionmaker[AsyncSession],
    ) -> bool:
        """Keep a settlement whose outcome is unknown as pending; False when it settled or
        failed, or cannot be resolved later (no chain identity, no RPC to read): then it is
        settled or failed as before."""
        unknown = not result.success and result.error_reason in UNKNOWN_OUTCOMES
        if not unknown or hold.exact is None or not self.reader.reads(hold.network):
            return False
        identity = identity_of(*hold.exact, result.transaction)
        if identity is None:
            return False
        await journal.pending(
            sessions,
            hold.held,
            payer=result.payer or hold.payer,
            transaction=result.transaction,
            chain_identity=as_json(identity),
            answer=dict(answer) if answer is not None else None,
            reason=str(result.error_reason),
        )
        metrics.SETTLEMENTS.labels(hold.network, "unknown").inc()
        log.warning(
            "settlement on %s sent without an answer (%s): kept pending until the chain says",
            hold.network,
            result.error_reason,
        )
        return True

    async def retried(
        self,
        taken: journal.Taken,
        quote: Quote,
        network: str,
        sessions: async_sessionmaker[AsyncSession],
    ) -> Answered | Declined | None:
        """A retry of a pending payment: its paid answer, a refusal, or None when it provably
        did not land (failed in the journal now: the caller takes the payment up as new)."""
        assert taken.pk is not None
        if taken.state == "landed":
            outcome: Resolution = Landed(taken.transaction)
        else:
            identity = from_json(taken.chain_identity)
            if identity is None:
                return confirming(quote, RETRY_AFTER_S)
            outcome = await self.reader.resolve(identity)
        if isinstance(outcome, Lost):
            await journal.resolved(sessions, taken.pk, "failed", reason=outcome.why)
            metrics.RESOLUTIONS.labels(network, "lost").inc()
            log.info("pending settlement %d did not land: %s", taken.pk, outcome.why)
            return None
        if not isinstance(outcome, Landed):
            return confirming(quote, outcome.retry_after_s)
        transaction = outcome.transaction or taken.transaction or ""
        receipt = SettleResponse(
            success=True, payer=taken.payer, transaction=transaction, network=network
        ).model_dump(mode="json", exclude_none=True)
        answered = await journal.resolved(
            sessions, taken.pk, "settled", transaction=transaction, receipt=receipt
        )
        if not answered:  # another retry answered it a moment ago
            return decline(quote, "payment_already_used")
        metrics.RESOLUTIONS.labels(network, "landed").inc()
        if taken.state == "pending":  # a landed one was counted when it was reconciled
            metrics.USDC_RECEIVED.labels(network).inc(quote.amount)
        log.info("pending settlement %d landed (%s): answered now", taken.pk, transaction)
        if quote.pack_calls is not None:
            await bundles.issue(
                sessions,
                token=bundles.token_for(self._bundle_secret, taken.pk),
                payment_pk=taken.pk,
                tool=quote.tool,
                calls=quote.pack_calls,
                payer=taken.payer,
                network=network,
                lifetime=BUNDLE_LIFETIME,
            )
        settled = SettleResponse.model_validate(receipt)
        return Answered(taken.answer or {}, settled, payment_pk=taken.pk, first_time=True)

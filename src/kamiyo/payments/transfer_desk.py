"""Taking payment by plain Solana transfer (see transfers.py): offer, claim, check, hold.

A claim is held in the journal before the chain is read, so of concurrent claims of one
transfer, on any number of instances, one goes on; the others are told REPLAY_ATTACK.
"""

import logging
import time
from typing import Any

from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.chains import AcceptedNetwork
from kamiyo.payments import journal, metrics, transfers
from kamiyo.payments.outcomes import Declined, Hold, Quote, decline, digest
from kamiyo.payments.rpc import RpcRequestError, RpcTimeoutError, RpcUnavailableError, SolanaRpc
from kamiyo.payments.transfers import (
    MAX_AGE_S,
    References,
    TransferClaim,
    TransferRefused,
    VerifiedTransfer,
)

log = logging.getLogger(__name__)

# Where the unpaid answer offers payment by transfer, under PaymentRequired.extensions.
TRANSFER_EXTENSION = "kamiyo/solana-transfer"


class TransferDesk:
    def __init__(self, network: AcceptedNetwork, secret: str) -> None:
        self.network = network
        self._references = References(secret)
        self._rpc: SolanaRpc | None = None
        # Claims already read from the chain: checking one again (a retry) costs no request.
        self._verified: TTLCache[tuple[TransferClaim, str, int], VerifiedTransfer] = TTLCache(
            10_000, ttl=MAX_AGE_S
        )

    async def start(self) -> None:
        self._rpc = SolanaRpc(self.network.rpc_urls)

    async def stop(self) -> None:
        if self._rpc is not None:
            await self._rpc.aclose()
            self._rpc = None

    def offer(self, tool: str, amount: int) -> dict[str, Any]:
        return transfers.offer(self._references, self.network, tool, amount, int(time.time()))

    async def accept(
        self, claim: TransferClaim, quote: Quote, sessions: async_sessionmaker[AsyncSession]
    ) -> Hold | Declined:
        network = self.network.network
        entry = journal.Entry(
            payment_key=digest([network, "transfer", claim.signature]),
            payload_hash=digest([claim.signature, claim.reference]),
            payment_id=None,
            tool=quote.tool,
            network=network,
            amount=quote.amount,
        )
        held = await journal.hold(sessions, entry)
        if isinstance(held, journal.Taken):
            detail = "this transfer already paid for a call"
            if held.state == "held":
                detail = "this transfer is being claimed by another call right now"
            return decline(quote, "REPLAY_ATTACK", detail)
        started = time.perf_counter()
        verdict = await self._verify(claim, quote)
        metrics.VERIFICATION_SECONDS.labels(network).observe(time.perf_counter() - started)
        result = "valid" if isinstance(verdict, VerifiedTransfer) else verdict.code
        metrics.VERIFICATIONS.labels(network, result).inc()
        if isinstance(verdict, TransferRefused):
            await journal.failed(sessions, held, verdict.code)
            log.info("transfer for %s refused: %s", quote.tool, verdict.code)
            return decline(quote, verdict.code, verdict.message)
        return Hold(held, quote, network, verdict.payer, transfer=verdict)

    async def _verify(
        self, claim: TransferClaim, quote: Quote
    ) -> VerifiedTransfer | TransferRefused:
        if self._rpc is None:
            raise RuntimeError("the transfer desk was used before it started")
        key = (claim, quote.tool, quote.amount)
        known = self._verified.get(key)
        now = int(time.time())
        if known is not None and now - known.block_time <= MAX_AGE_S:
            metrics.VERIFIED_CACHE.labels("hit").inc()
            return known
        metrics.VERIFIED_CACHE.labels("miss").inc()
        try:
            verdict = await transfers.verify_transfer(
                self._rpc,
                claim,
                network=self.network,
                references=self._references,
                tool=quote.tool,
                amount=quote.amount,
                now=now,
            )
        except RpcTimeoutError:
            return TransferRefused("VERIFICATION_TIMEOUT", "the chain did not answer in time")
        except (RpcUnavailableError, RpcRequestError) as exc:
            log.warning("transfer verification failed: %s", exc)
            return TransferRefused("RPC_ERROR", "the chain cannot be read right now; retry")
        if isinstance(verdict, VerifiedTransfer):
            self._verified[key] = verdict
        return verdict


def name_the_claim(
    required: dict[str, Any], message: str, where: str, signature: str, reference: str
) -> str:
    """Say where a surface takes a transfer claim (``where``: "arguments", "headers"; the two
    names it reads them from): under ``claimWith`` in the transfer offer of ``required``, and
    in the sentence returned from ``message``. No transfer offer: the message unchanged."""
    offer = (required.get("extensions") or {}).get(TRANSFER_EXTENSION)
    if not isinstance(offer, dict):
        return message
    offer["claimWith"] = {where: {"signature": signature, "reference": reference}}
    return (
        f"{message} A transfer is claimed with the {where} {signature} (its signature) and "
        f"{reference} (the reference)."
    )

"""Resolving pending settlements without waiting for a retry: ``kamiyo payments reconcile``
and a pass of ``kamiyo worker``.

Each pending settlement is read from the chain (settlements.py): one that landed is marked
``landed`` (taken; a retry of the same payment is answered as paid) and reported, as the payer
was charged and not answered yet; one that provably never landed is failed (nothing taken);
the rest stay pending. It only reads the chain and moves journal rows the way a retry would,
so it applies what it finds (there is no dry run: nothing it does can charge anyone).
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from x402.schemas import SettleResponse

from kamiyo import closing
from kamiyo.config import X402Settings
from kamiyo.db.payments import Payment
from kamiyo.payments import journal, metrics
from kamiyo.payments.settlements import ChainReader, Landed, Lost, from_json, reader_for

log = logging.getLogger(__name__)

EVERY_S = 60.0  # the worker's pass: pending settlements are few and a retry resolves its own


@dataclass(frozen=True, slots=True)
class Settlement:
    pk: int
    network: str
    payer: str | None
    amount: int
    tool: str
    transaction: str | None
    why: str = ""


@dataclass(slots=True)
class Reconciled:
    landed_unanswered: list[Settlement] = field(default_factory=list)
    lost: list[Settlement] = field(default_factory=list)
    pending: list[Settlement] = field(default_factory=list)


def _settlement(row: Payment, why: str = "", transaction: str | None = None) -> Settlement:
    return Settlement(
        row.pk, row.network, row.payer, row.amount, row.tool, transaction or row.transaction, why
    )


async def reconcile(sessions: async_sessionmaker[AsyncSession], reader: ChainReader) -> Reconciled:
    """Resolve every pending settlement the chain can tell; report those charged, unanswered."""
    found = Reconciled()
    for row in await journal.unresolved(sessions):
        if row.state == journal.LANDED:
            found.landed_unanswered.append(_settlement(row, "landed before"))
            continue
        identity = from_json(row.chain_identity)
        if identity is None:
            found.pending.append(_settlement(row, "no chain identity"))
            continue
        outcome = await reader.resolve(identity)
        if isinstance(outcome, Landed):
            transaction = outcome.transaction or row.transaction or ""
            receipt = SettleResponse(
                success=True, payer=row.payer, transaction=transaction, network=row.network
            ).model_dump(mode="json", exclude_none=True)
            if await journal.resolved(
                sessions, row.pk, "landed", transaction=transaction, receipt=receipt
            ):
                metrics.RESOLUTIONS.labels(row.network, "reconciled_landed").inc()
                metrics.USDC_RECEIVED.labels(row.network).inc(row.amount)
                found.landed_unanswered.append(_settlement(row, "landed", transaction))
        elif isinstance(outcome, Lost):
            if await journal.resolved(sessions, row.pk, "failed", reason=outcome.why):
                metrics.RESOLUTIONS.labels(row.network, "lost").inc()
                found.lost.append(_settlement(row, outcome.why))
        else:
            found.pending.append(_settlement(row, outcome.why))
    metrics.UNRESOLVED_SETTLEMENTS.labels("pending").set(len(found.pending))
    metrics.UNRESOLVED_SETTLEMENTS.labels("landed").set(len(found.landed_unanswered))
    for charged in found.landed_unanswered:
        log.warning(
            "payment %d (%d atomic USDC for %s on %s by %s, transaction %s) is settled on chain "
            "but its payer has not been answered: a retry of the same payment is answered",
            charged.pk,
            charged.amount,
            charged.tool,
            charged.network,
            charged.payer,
            charged.transaction or "unknown",
        )
    return found


@asynccontextmanager
async def reconciling(
    sessions: async_sessionmaker[AsyncSession], x402: X402Settings, every_s: float = EVERY_S
) -> AsyncIterator[None]:
    """The worker's pass: reconcile every ``every_s`` while the block runs (x402 on)."""
    if not x402.networks:
        yield
        return
    reader = reader_for(x402.networks)

    async def passes() -> None:
        while True:
            try:
                await reconcile(sessions, reader)
            except Exception as exc:  # the database or chain away: the next pass tries again
                log.warning("reconciling pending settlements failed: %s", exc)
            await asyncio.sleep(every_s)

    try:
        async with closing.in_background(passes(), "reconcile-settlements"):
            yield
    finally:
        await reader.aclose()

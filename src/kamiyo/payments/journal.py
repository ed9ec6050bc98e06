"""The settlement journal: which payments were taken, for what, and how it ended.

The database is the referee between instances: a payment is held by inserting its row (its key
is unique), so of fifty concurrent calls with one payment, on any number of servers, exactly one
holds it; the others are told it is in use or already spent. A held payment that is not settled
(the tool failed, settlement failed) is marked failed and may be tried again: nothing was taken.
A settlement whose outcome is unknown (sent, no answer) is kept ``pending`` with its chain
identity until the chain says how it ended (settlements.py): ``landed`` (taken, its answer not yet
handed out), then ``settled`` once a retry of the payment is answered; or failed.
"""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.db.payments import Payment

HELD, SETTLED, FAILED = "held", "settled", "failed"
PENDING, LANDED = "pending", "landed"
UNRESOLVED = (PENDING, LANDED)
# A hold this old belongs to a call that died (a crash between verifying and settling): no
# call runs this long, so the payment may be held again rather than refused as in use.
STALE_HOLD = dt.timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Entry:
    payment_key: str
    payload_hash: str
    payment_id: str | None
    tool: str
    network: str
    amount: int


@dataclass(frozen=True, slots=True)
class Held:
    pk: int


@dataclass(frozen=True, slots=True)
class Taken:
    """The payment is already in the journal and cannot pay for this call."""

    state: Literal["held", "settled", "failed", "conflict", "pending", "landed"]
    same_payment_id: bool = False
    answer: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    pk: int | None = field(default=None, compare=False)  # the row, when it settled or is pending
    # A pending or landed settlement: what the chain knows it by, and who paid.
    chain_identity: dict[str, Any] | None = field(default=None, compare=False)
    payer: str | None = field(default=None, compare=False)
    transaction: str | None = field(default=None, compare=False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def hold(sessions: async_sessionmaker[AsyncSession], entry: Entry) -> Held | Taken:
    """Hold a payment for one call, or say why it cannot be."""
    async with sessions() as session:
        if entry.payment_id is not None:
            known = await _find(session, Payment.payment_id == entry.payment_id)
            if known is not None:
                return await _retry(session, known, entry)
        row = Payment(
            payment_key=entry.payment_key,
            payload_hash=entry.payload_hash,
            payment_id=entry.payment_id,
            tool=entry.tool,
            network=entry.network,
            payer=None,  # known once verified; written when the payment settles
            amount=entry.amount,
            state=HELD,
            created_at=_now(),
            updated_at=_now(),
        )
        session.add(row)
        try:
            await session.commit()
            return Held(row.pk)
        except IntegrityError:
            await session.rollback()
        known = await _find(session, Payment.payment_key == entry.payment_key)
        if known is None:  # its payment id was taken by another payment in the meantime
            known = await _find(session, Payment.payment_id == entry.payment_id)
        if known is None:
            return Taken("held")
        return await _retry(session, known, entry)


async def _find(session: AsyncSession, where: Any) -> Payment | None:
    return (await session.execute(select(Payment).where(where))).scalar_one_or_none()


async def _retry(session: AsyncSession, known: Payment, entry: Entry) -> Held | Taken:
    same_id = entry.payment_id is not None and known.payment_id == entry.payment_id
    if same_id and known.payload_hash != entry.payload_hash:
        return Taken("conflict", same_payment_id=True)
    stale = known.state == HELD and known.updated_at < _now() - STALE_HOLD
    if (known.state == FAILED or stale) and known.payment_key == entry.payment_key:
        # Nothing was taken last time; take it up again, unless another call just did.
        claimed = await session.execute(
            update(Payment)
            .where(
                Payment.pk == known.pk,
                Payment.state == known.state,
                Payment.updated_at == known.updated_at,
            )
            .values(state=HELD, tool=entry.tool, reason=None, updated_at=_now())
        )
        await session.commit()
        if getattr(claimed, "rowcount", 0) == 1:
            return Held(known.pk)
        return Taken("held", same_id)
    if known.state == SETTLED:
        answer = known.answer if same_id else None
        return Taken("settled", same_id, answer, known.receipt, known.pk)
    if known.state in UNRESOLVED and known.payment_key == entry.payment_key:
        # The same payment again: its answer waits for the chain (the cashier asks it).
        state: Literal["pending", "landed"] = "pending" if known.state == PENDING else "landed"
        return Taken(
            state,
            same_id,
            known.answer,
            known.receipt,
            known.pk,
            chain_identity=known.chain_identity,
            payer=known.payer,
            transaction=known.transaction,
        )
    return Taken("held", same_id)


async def settled(
    sessions: async_sessionmaker[AsyncSession],
    held: Held,
    payer: str | None,
    transaction: str,
    receipt: dict[str, Any],
    answer: dict[str, Any] | None,
) -> None:
    async with sessions() as session:
        await session.execute(
            update(Payment)
            .where(Payment.pk == held.pk)
            .values(
                state=SETTLED,
                payer=payer,
                transaction=transaction,
                receipt=receipt,
                answer=answer,
                updated_at=_now(),
            )
        )
        await session.commit()


async def failed(sessions: async_sessionmaker[AsyncSession], held: Held, reason: str) -> None:
    async with sessions() as session:
        await session.execute(
            update(Payment)
            .where(Payment.pk == held.pk, Payment.state == HELD)
            .values(state=FAILED, reason=reason[:200], updated_at=_now())
        )
        await session.commit()


async def pending(
    sessions: async_sessionmaker[AsyncSession],
    held: Held,
    *,
    payer: str | None,
    transaction: str | None,
    chain_identity: dict[str, Any],
    answer: dict[str, Any] | None,
    reason: str,
) -> None:
    """The settlement went out and its outcome is unknown: keep it, and the answer it bought,
    until the chain says how it ended."""
    async with sessions() as session:
        await session.execute(
            update(Payment)
            .where(Payment.pk == held.pk, Payment.state == HELD)
            .values(
                state=PENDING,
                payer=payer,
                transaction=transaction or None,
                chain_identity=chain_identity,
                answer=answer,
                reason=reason[:200],
                updated_at=_now(),
            )
        )
        await session.commit()


async def resolved(
    sessions: async_sessionmaker[AsyncSession],
    pk: int,
    state: Literal["landed", "settled", "failed"],
    *,
    transaction: str | None = None,
    receipt: dict[str, Any] | None = None,
    reason: str | None = None,
) -> bool:
    """Move a pending (or landed) settlement on as the chain resolved it: landed (taken, not
    answered yet), settled (taken and answered now) or failed (never taken). False when another
    call or reconciler moved it first: only one of them answers it."""
    sources = (PENDING,) if state != SETTLED else UNRESOLVED
    values: dict[str, Any] = {"state": state, "updated_at": _now()}
    if transaction:
        values["transaction"] = transaction
    if receipt is not None:
        values["receipt"] = receipt
    if reason is not None:
        values["reason"] = reason[:200]
    async with sessions() as session:
        moved = await session.execute(
            update(Payment).where(Payment.pk == pk, Payment.state.in_(sources)).values(**values)
        )
        await session.commit()
    return getattr(moved, "rowcount", 0) == 1


async def unresolved(sessions: async_sessionmaker[AsyncSession]) -> list[Payment]:
    """Settlements not answered yet whose payment may be taken: pending ones and landed ones."""
    async with sessions() as session:
        rows = await session.execute(
            select(Payment).where(Payment.state.in_(UNRESOLVED)).order_by(Payment.pk)
        )
        return list(rows.scalars())

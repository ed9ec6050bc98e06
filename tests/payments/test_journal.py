"""The settlement journal on both backends: one hold per payment, however many ask at once."""

import datetime as dt

import anyio
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.db.payments import Payment
from kamiyo.payments import journal

pytestmark = pytest.mark.anyio


def _entry(key: str = "k1", payload: str = "p1", payment_id: str | None = None) -> journal.Entry:
    return journal.Entry(
        payment_key=key,
        payload_hash=payload,
        payment_id=payment_id,
        tool="search_exploits",
        network="eip155:31337",
        amount=10_000,
    )


async def test_a_payment_is_held_once_and_settled_once(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    held = await journal.hold(migrated_sessions, _entry())
    assert isinstance(held, journal.Held)
    assert await journal.hold(migrated_sessions, _entry()) == journal.Taken("held")
    await journal.settled(migrated_sessions, held, "0xpayer", "0xtx", {"success": True}, None)
    again = await journal.hold(migrated_sessions, _entry())
    assert again == journal.Taken("settled", receipt={"success": True})
    async with migrated_sessions() as session:
        row = (await session.execute(select(Payment))).scalar_one()
    assert (row.state, row.payer, row.transaction) == ("settled", "0xpayer", "0xtx")


async def test_a_failed_payment_can_be_tried_again(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    held = await journal.hold(migrated_sessions, _entry())
    assert isinstance(held, journal.Held)
    await journal.failed(migrated_sessions, held, "tool_failed")
    retried = await journal.hold(migrated_sessions, _entry())
    assert retried == held  # the same row, held again: nothing was taken the first time


async def test_the_same_payment_id_gets_the_stored_answer_or_a_conflict(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    held = await journal.hold(migrated_sessions, _entry(payment_id="pay_abc"))
    assert isinstance(held, journal.Held)
    answer = {"incidents": [{"id": "x"}]}
    await journal.settled(migrated_sessions, held, "0xp", "0xtx", {"success": True}, answer)
    same = await journal.hold(migrated_sessions, _entry(payment_id="pay_abc"))
    assert same == journal.Taken("settled", True, answer, {"success": True})
    other = await journal.hold(migrated_sessions, _entry("k2", "p2", payment_id="pay_abc"))
    assert other == journal.Taken("conflict", same_payment_id=True)


async def test_fifty_concurrent_holds_of_one_payment_make_one_hold(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    outcomes: list[journal.Held | journal.Taken] = []

    async def hold() -> None:
        outcomes.append(await journal.hold(migrated_sessions, _entry()))

    async with anyio.create_task_group() as tasks:
        for _ in range(50):
            tasks.start_soon(hold)
    assert sum(isinstance(o, journal.Held) for o in outcomes) == 1
    assert outcomes.count(journal.Taken("held")) == 49


async def test_a_hold_left_by_a_dead_call_is_taken_up_again(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    held = await journal.hold(migrated_sessions, _entry())
    assert isinstance(held, journal.Held)
    assert await journal.hold(migrated_sessions, _entry()) == journal.Taken("held")
    long_ago = dt.datetime.now(dt.UTC) - journal.STALE_HOLD - dt.timedelta(seconds=1)
    async with migrated_sessions() as session:
        await session.execute(update(Payment).values(updated_at=long_ago))
        await session.commit()
    assert await journal.hold(migrated_sessions, _entry()) == held
    assert await journal.hold(migrated_sessions, _entry()) == journal.Taken("held")


async def _pending(sessions: async_sessionmaker[AsyncSession]) -> journal.Held:
    held = await journal.hold(sessions, _entry())
    assert isinstance(held, journal.Held)
    await journal.pending(
        sessions,
        held,
        payer="0xp",
        transaction="0xtx",
        chain_identity={"kind": "eip3009", "nonce": "0x01"},
        answer={"incidents": []},
        reason="settlement_unknown",
    )
    return held


async def test_a_pending_settlement_is_answered_once_however_many_retries_race(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    held = await _pending(migrated_sessions)
    taken = await journal.hold(migrated_sessions, _entry())
    assert isinstance(taken, journal.Taken)
    assert (taken.state, taken.pk, taken.answer) == ("pending", held.pk, {"incidents": []})
    assert (taken.chain_identity, taken.payer, taken.transaction) == (
        {"kind": "eip3009", "nonce": "0x01"},
        "0xp",
        "0xtx",
    )
    assert [row.pk for row in await journal.unresolved(migrated_sessions)] == [held.pk]
    answered: list[bool] = []

    async def answer() -> None:
        receipt = {"success": True}
        answered.append(
            await journal.resolved(migrated_sessions, held.pk, "settled", receipt=receipt)
        )

    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(answer)
    assert sorted(answered) == [False] * 9 + [True]
    assert await journal.hold(migrated_sessions, _entry()) == journal.Taken(
        "settled", receipt={"success": True}
    )
    assert await journal.unresolved(migrated_sessions) == []


async def test_a_pending_settlement_that_never_landed_can_be_tried_again(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    held = await _pending(migrated_sessions)
    assert await journal.resolved(migrated_sessions, held.pk, "failed", reason="expired")
    assert not await journal.resolved(migrated_sessions, held.pk, "landed")  # no longer pending
    assert await journal.hold(migrated_sessions, _entry()) == held

"""The meter: batched writes, hash chains that show tampering, writers that share a database."""

import asyncio
import datetime as dt

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys
from kamiyo.access.meter import ANONYMOUS_CHAIN, Meter, UsageEvent, chain_of, verify_chain
from kamiyo.access.usage import Breakdown, month_usage, usage_breakdown
from kamiyo.db.tables import ApiKey
from kamiyo.db.usage import UsageChain, UsageRecord
from kamiyo.tiers import Tier

pytestmark = pytest.mark.anyio


def event(account_pk: int | None, tool: str = "search_exploits", status: str = "ok") -> UsageEvent:
    return UsageEvent(
        at=dt.datetime.now(dt.UTC),
        account_pk=account_pk,
        key_pk=None,
        tool=tool,
        tier="personal" if account_pk else "free",
        status=status,
        duration_us=1234,
        result_count=10 if status == "ok" else None,
        cost_units=1 if status == "ok" else 0,
    )


async def count(sessions: async_sessionmaker[AsyncSession], chain: str) -> int:
    async with sessions() as session:
        found = await session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.chain == chain)
        )
        return found or 0


async def test_events_are_written_in_batches_and_on_exit(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    meter = Meter(flush_interval_s=3600)  # only the exit writes here
    async with meter.running(migrated_sessions):
        for _ in range(5):
            meter.record(event(1))
        meter.record(event(None, status="rate_limited"))
        assert await count(migrated_sessions, chain_of(1)) == 0
        assert len(meter.pending(1)) == 5
    assert await count(migrated_sessions, chain_of(1)) == 5
    assert await count(migrated_sessions, ANONYMOUS_CHAIN) == 1
    async with migrated_sessions() as session:
        check = await verify_chain(session, chain_of(1))
        assert (check.ok, check.records) == (True, 5)
        assert (await verify_chain(session, ANONYMOUS_CHAIN)).ok


async def test_the_periodic_flush_writes_without_a_stop(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    meter = Meter(flush_interval_s=0.05)
    async with meter.running(migrated_sessions):
        meter.record(event(3))
        for _ in range(200):  # poll until the background flush has run
            if await count(migrated_sessions, chain_of(3)) == 1:
                break
            await asyncio.sleep(0.05)
        assert await count(migrated_sessions, chain_of(3)) == 1


async def _chain_with(sessions: async_sessionmaker[AsyncSession], records: int) -> None:
    meter = Meter(flush_interval_s=3600)
    async with meter.running(sessions):
        for i in range(records):
            meter.record(event(9, tool=f"tool_{i}"))


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (update(UsageRecord).where(UsageRecord.seq == 2).values(tool="x"), "record 2 was altered"),
        (update(UsageRecord).where(UsageRecord.seq == 3).values(cost_units=0), "record 3 was"),
        (delete(UsageRecord).where(UsageRecord.seq == 2), "record 2 is missing"),
        (delete(UsageRecord).where(UsageRecord.seq == 4), "were removed"),
        (update(UsageRecord).where(UsageRecord.seq == 3).values(prev_hash="0" * 64), "3 does not"),
    ],
)
async def test_tampering_breaks_the_chain(
    migrated_sessions: async_sessionmaker[AsyncSession], tamper: object, problem: str
) -> None:
    await _chain_with(migrated_sessions, 4)
    async with migrated_sessions() as session:
        assert (await verify_chain(session, chain_of(9))).ok
        await session.execute(tamper)  # type: ignore[call-overload]
        await session.commit()
        check = await verify_chain(session, chain_of(9))
    assert not check.ok
    assert check.problem is not None
    assert problem in check.problem


async def test_two_writers_extend_one_chain_in_turn(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two meters (two server processes) flushing the same account at once keep one chain."""
    first, second = Meter(flush_interval_s=3600), Meter(flush_interval_s=3600)
    async with first.running(migrated_sessions), second.running(migrated_sessions):
        for round_ in range(5):
            for _ in range(20):
                first.record(event(5, tool=f"a{round_}"))
                second.record(event(5, tool=f"b{round_}"))
            written = await asyncio.gather(first.flush(), second.flush())
            assert list(written) == [20, 20]
    async with migrated_sessions() as session:
        check = await verify_chain(session, chain_of(5))
        head = await session.get(UsageChain, chain_of(5))
    assert (check.ok, check.records) == (True, 200)
    assert head is not None
    assert head.seq == 200


async def test_a_failed_write_keeps_its_events(
    migrated_sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    meter = Meter(flush_interval_s=3600)
    async with meter.running(migrated_sessions):
        meter.record(event(1))
        async with migrated_sessions() as session:  # a head that cannot be extended
            session.add(UsageChain(chain=chain_of(1), seq=0, hash="0" * 64))
            session.add(
                UsageRecord(
                    **{
                        "chain": chain_of(1),
                        "seq": 1,
                        "at": dt.datetime.now(dt.UTC),
                        "tool": "t",
                        "tier": "free",
                        "status": "ok",
                        "duration_us": 1,
                        "cost_units": 1,
                        "prev_hash": "0" * 64,
                        "hash": "1" * 64,
                    }
                )
            )
            await session.commit()
        assert await meter.flush() == 0
        assert len(meter.pending(1)) == 1  # kept for the next attempt
        assert "will retry" in caplog.text
        async with migrated_sessions() as session:
            await session.execute(delete(UsageRecord))
            await session.commit()
    assert await count(migrated_sessions, chain_of(1)) == 1  # the exit wrote it


async def test_keys_last_use_and_usage_queries(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with migrated_sessions() as session:
        account = await accounts.create_account(session, "meter@example.com", Tier.PERSONAL)
        await keys.create_key(session, account, "laptop")
        await session.commit()
        account_pk = account.pk
        key_pk = await session.scalar(select(ApiKey.pk))
    meter = Meter(flush_interval_s=3600)
    async with meter.running(migrated_sessions):
        for status in ("ok", "ok", "error", "rate_limited"):
            meter.record(
                UsageEvent(
                    at=dt.datetime.now(dt.UTC),
                    account_pk=account_pk,
                    key_pk=key_pk,
                    tool="get_exploit" if status == "error" else "search_exploits",
                    tier="personal",
                    status=status,
                    duration_us=2000,
                    result_count=None,
                    cost_units=1 if status == "ok" else 0,
                )
            )
        async with migrated_sessions() as session:
            pending_only = await month_usage(session, account_pk, meter.pending(account_pk))
        assert (pending_only.calls, pending_only.cost_units) == (3, 2)
    async with migrated_sessions() as session:
        key = await session.get(ApiKey, key_pk)
        assert key is not None
        assert key.last_used_at is not None
        month = await month_usage(session, account_pk)
        assert (month.calls, month.cost_units) == (3, 2)  # the refusal is recorded, not usage
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        by_status = await usage_breakdown(session, account_pk, since, Breakdown.STATUS)
        by_tool = await usage_breakdown(session, account_pk, since, Breakdown.TOOL)
        by_day = await usage_breakdown(session, account_pk, since, Breakdown.DAY)
    assert [(r.key, r.calls) for r in by_status] == [("error", 1), ("ok", 2), ("rate_limited", 1)]
    assert [(r.key, r.calls, r.cost_units) for r in by_tool] == [
        ("get_exploit", 1, 0),
        ("search_exploits", 3, 2),
    ]
    assert [(r.key, r.calls) for r in by_day] == [(dt.datetime.now(dt.UTC).date().isoformat(), 4)]
    assert by_day[0].mean_duration_ms == 2.0


async def test_a_write_cancelled_midway_loses_nothing(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    meter = Meter(flush_interval_s=3600)
    async with meter.running(migrated_sessions):
        for _ in range(50):
            meter.record(event(4))
        writing = asyncio.create_task(meter.flush())
        for _ in range(3):  # into the database round trips
            await asyncio.sleep(0)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert len(meter.pending(4)) == 50
    assert await count(migrated_sessions, chain_of(4)) == 50
    async with migrated_sessions() as session:
        assert (await verify_chain(session, chain_of(4))).ok

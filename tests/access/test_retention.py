"""Usage retention: old records become daily totals, chains stay verifiable, reports add up."""

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Sequence

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from kamiyo.access.meter import Meter, UsageEvent, chain_of, verify_chain
from kamiyo.access.receipts import unrecorded_settlements
from kamiyo.access.retention import prune_usage
from kamiyo.access.usage import Breakdown, month_usage, usage_breakdown
from kamiyo.access.usage_checkpoint import checkpoint_key
from kamiyo.access.usage_report import daily_counts
from kamiyo.cli import app
from kamiyo.config import Settings
from kamiyo.db.payments import Payment
from kamiyo.db.usage import UsageCheckpoint, UsageDaily, UsageRecord
from tests.access.test_receipts import settle

pytestmark = pytest.mark.anyio

ACCOUNT = 7
NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=40)  # past the 30 days kept raw
RECENT = NOW - dt.timedelta(days=2)


def settings(**usage: object) -> Settings:
    return Settings(_env_file=None).with_changes(usage=usage)


def key_of(chosen: Settings) -> bytes:
    return checkpoint_key(chosen.usage.checkpoint_key, chosen.auth.secret_key)


def event(at: dt.datetime, tool: str = "search_exploits", status: str = "ok") -> UsageEvent:
    return UsageEvent(
        at=at,
        account_pk=ACCOUNT,
        key_pk=None,
        tool=tool,
        tier="personal",
        status=status,
        duration_us=2000,
        result_count=3 if status == "ok" else None,
        cost_units=1 if status == "ok" else 0,
    )


async def write(sessions: async_sessionmaker[AsyncSession], events: Sequence[UsageEvent]) -> None:
    meter = Meter(flush_interval_s=3600)  # the exit writes them, in order
    async with meter.running(sessions):
        for each in events:
            meter.record(each)


OLD_CALLS = [
    event(OLD),
    event(OLD, status="rate_limited"),
    event(OLD + dt.timedelta(hours=1), tool="get_exploit"),
    event(OLD + dt.timedelta(days=1), status="error"),
    event(OLD + dt.timedelta(days=1)),
]
RECENT_CALLS = [event(RECENT), event(RECENT, tool="get_exploit"), event(NOW)]


async def reports(session: AsyncSession) -> tuple[object, ...]:
    since = NOW - dt.timedelta(days=90)
    by = [await usage_breakdown(session, ACCOUNT, since, b) for b in Breakdown]
    return (*by, await daily_counts(session, ACCOUNT, since.date()))


async def raw_count(session: AsyncSession) -> int:
    found = await session.scalar(select(func.count()).where(UsageRecord.chain == chain_of(ACCOUNT)))
    return found or 0


async def test_pruning_folds_old_records_into_daily_totals_and_the_chain_still_verifies(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    chosen = settings()
    await write(migrated_sessions, [*OLD_CALLS, *RECENT_CALLS])
    async with migrated_sessions() as session:
        before = await reports(session)

    dry = await prune_usage(migrated_sessions, chosen, apply=False, now=NOW)
    assert (dry.records, dry.applied) == (5, False)
    async with migrated_sessions() as session:
        assert await raw_count(session) == 8  # a dry run changes nothing

    seen: list[tuple[str, int]] = []
    done = await prune_usage(
        migrated_sessions,
        chosen,
        apply=True,
        now=NOW,
        on_chain=lambda result, total: seen.append((result.chain, total)),
    )
    assert done.records == 5
    assert seen == [(chain_of(ACCOUNT), 1)]
    async with migrated_sessions() as session:
        assert await raw_count(session) == 3
        checkpoint = (await session.scalars(select(UsageCheckpoint))).one()
        assert (checkpoint.chain, checkpoint.seq, checkpoint.pruned) == (chain_of(ACCOUNT), 5, 5)
        check = await verify_chain(session, chain_of(ACCOUNT), key_of(chosen))
        assert (check.ok, check.records) == (True, 3)
        assert await reports(session) == before  # totals, days, tools, statuses, means kept
        daily = (await session.execute(select(func.sum(UsageDaily.calls)))).scalar()
        assert daily == 5

    # The chain goes on from its head; a second prune finds nothing more to do.
    await write(migrated_sessions, [event(NOW)])
    again = await prune_usage(migrated_sessions, chosen, apply=True, now=NOW)
    assert again.records == 0
    async with migrated_sessions() as session:
        check = await verify_chain(session, chain_of(ACCOUNT), key_of(chosen))
        assert (check.ok, check.records) == (True, 4)


async def test_month_totals_count_pruned_days_of_the_month(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Pruned "yesterday" (raw_days=1, with now a day ahead) still counts this month.
    today = dt.datetime.now(dt.UTC)
    await write(migrated_sessions, [event(today), event(today, tool="get_exploit")])
    async with migrated_sessions() as session:
        before = await month_usage(session, ACCOUNT)
    tomorrow = today + dt.timedelta(days=2)
    done = await prune_usage(migrated_sessions, settings(raw_days=1), apply=True, now=tomorrow)
    assert done.records == 2
    async with migrated_sessions() as session:
        assert await raw_count(session) == 0
        assert await month_usage(session, ACCOUNT) == before
        check = await verify_chain(session, chain_of(ACCOUNT), key_of(settings()))
        assert (check.ok, check.records) == (True, 0)  # all pruned: the head is the checkpoint


async def test_a_checkpoint_tampered_with_or_unsigned_does_not_verify(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    chosen = settings()
    await write(migrated_sessions, [*OLD_CALLS, *RECENT_CALLS])
    await prune_usage(migrated_sessions, chosen, apply=True, now=NOW)
    chain = chain_of(ACCOUNT)
    async with migrated_sessions() as session:
        assert not (await verify_chain(session, chain)).ok  # no key: cannot be checked
        other = settings(checkpoint_key=SecretStr("another key, not the one that signed"))
        refused = await verify_chain(session, chain, key_of(other))
        assert refused.problem is not None
        assert "another key" in refused.problem
        await session.execute(update(UsageCheckpoint).values(seq=4))  # hide one more record
        await session.commit()
        moved = await verify_chain(session, chain, key_of(chosen))
        assert (
            moved.problem == "the checkpoint at record 4 was altered (its signature does not match)"
        )


async def test_a_chain_that_does_not_verify_is_left_alone(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write(migrated_sessions, OLD_CALLS)
    async with migrated_sessions() as session:
        await session.execute(
            update(UsageRecord).where(UsageRecord.seq == 2).values(status="ok", cost_units=1)
        )
        await session.commit()
    done = await prune_usage(migrated_sessions, settings(), apply=True, now=NOW)
    assert done.records == 0
    assert [p.problem for p in done.problems] == ["it does not verify: record 2 was altered"]
    async with migrated_sessions() as session:
        assert await raw_count(session) == 5  # the evidence stays


async def test_daily_totals_go_after_their_own_retention(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    chosen = settings(daily_days=365)
    await write(migrated_sessions, OLD_CALLS)
    await prune_usage(migrated_sessions, chosen, apply=True, now=NOW)
    later = NOW + dt.timedelta(days=400)
    dry = await prune_usage(migrated_sessions, chosen, apply=False, now=later)
    assert dry.daily_rows == 5  # (day, tool, status): 3 on the first day, 2 on the next
    done = await prune_usage(migrated_sessions, chosen, apply=True, now=later)
    assert done.daily_rows == 5
    async with migrated_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UsageDaily)) == 0
        assert (await verify_chain(session, chain_of(ACCOUNT), key_of(chosen))).ok


async def test_the_prune_command_is_a_dry_run_unless_applied(
    migrated_sessions: async_sessionmaker[AsyncSession],
    migrated_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    await write(migrated_sessions, [event(old), event(old, tool="get_exploit")])
    monkeypatch.setenv("KAMIYO_DATABASE_URL", migrated_database_url)
    from kamiyo.config import get_settings

    get_settings.cache_clear()
    runner = CliRunner()

    def kamiyo(*args: str) -> Result:  # in a thread: the command runs its own event loop
        return runner.invoke(app, list(args))

    dry = await asyncio.to_thread(kamiyo, "usage", "prune")
    assert dry.exit_code == 0, dry.output
    assert "Would prune 2 usage records" in dry.output
    assert "give --apply" in dry.output
    applied = await asyncio.to_thread(kamiyo, "usage", "prune", "--apply")
    assert applied.exit_code == 0, applied.output
    assert "Pruned 2 usage records" in applied.output
    verified = await asyncio.to_thread(kamiyo, "usage", "verify")
    assert verified.exit_code == 0, verified.output
    assert "all verify" in verified.output
    get_settings.cache_clear()


async def test_a_paid_call_pruned_is_not_reported_as_an_unrecorded_settlement(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    receipt = await settle(migrated_sessions)
    async with migrated_sessions() as session:  # paid when its call was made, 40 days ago
        await session.execute(
            update(Payment).where(Payment.pk == receipt.payment_pk).values(created_at=OLD)
        )
        await session.commit()
    paid = dataclasses.replace(event(OLD), receipt=receipt)
    await write(migrated_sessions, [paid, event(RECENT)])
    async with migrated_sessions() as session:
        assert await unrecorded_settlements(session) == 0
    done = await prune_usage(migrated_sessions, settings(), apply=True, now=NOW)
    assert done.records == 1
    async with migrated_sessions() as session:
        assert await unrecorded_settlements(session) == 0  # its record went, not unwritten
        assert (await verify_chain(session, chain_of(ACCOUNT), key_of(settings()))).ok

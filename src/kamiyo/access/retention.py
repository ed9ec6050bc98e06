"""Usage retention: records older than ``KAMIYO_USAGE_RAW_DAYS`` become daily totals.

For each chain, the oldest records (a prefix of the chain: seq 1..k, all before the cut-off day)
are counted into ``usage_daily`` per UTC day, tool, tier and status, a signed checkpoint
(access/usage_checkpoint.py) records where the pruned range ends and the hash it ended on, and
the records are deleted, all in one transaction: a call is counted in one table or the other.
The chain is verified first (unlocked, read only: records are only ever appended), so a
checkpoint never vouches for a tampered range; a chain that does not verify is left alone and
reported. Daily totals older than ``KAMIYO_USAGE_DAILY_DAYS`` are deleted; checkpoints stay.

Two pruners at once are safe: the write transaction locks the chain's head and re-reads the
latest checkpoint, and gives up on the chain if another pruner moved it meanwhile.
"""

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CursorResult, Date, Result, cast, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import ColumnElement

from kamiyo import closing
from kamiyo.access.meter import verify_chain
from kamiyo.access.usage_checkpoint import checkpoint_key, key_id, latest_checkpoint, sign
from kamiyo.config import Settings
from kamiyo.db.engine import dialect_name
from kamiyo.db.usage import UsageChain, UsageCheckpoint, UsageDaily, UsageRecord

log = logging.getLogger(__name__)


def utc_day(session: AsyncSession) -> ColumnElement[dt.date]:
    """A usage record's UTC calendar day (SQLite keeps datetimes as UTC text)."""
    if dialect_name(session) == "sqlite":
        return func.date(UsageRecord.at)
    return cast(func.timezone("UTC", UsageRecord.at), Date)


def cast_result(result: Result[Any]) -> CursorResult[Any]:
    assert isinstance(result, CursorResult)  # a DELETE's result has a row count
    return result


def as_date(value: object) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class Cutoffs:
    raw_from: dt.datetime  # records before this go
    daily_from: dt.date  # daily totals before this go

    @classmethod
    def of(cls, settings: Settings, now: dt.datetime | None = None) -> "Cutoffs":
        today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
        raw_day = today - dt.timedelta(days=settings.usage.raw_days)
        return cls(
            dt.datetime.combine(raw_day, dt.time(), dt.UTC),
            today - dt.timedelta(days=settings.usage.daily_days),
        )


@dataclass(frozen=True, slots=True)
class ChainPrune:
    chain: str
    records: int  # pruned (or, in a dry run, that would be)
    through_seq: int  # the chain's records up to this one are gone (0: none)
    problem: str | None = None


@dataclass
class PruneReport:
    cutoffs: Cutoffs
    applied: bool
    chains: list[ChainPrune] = field(default_factory=list)
    daily_rows: int = 0  # daily totals past their retention (removed, or that would be)

    @property
    def records(self) -> int:
        return sum(chain.records for chain in self.chains)

    @property
    def problems(self) -> list[ChainPrune]:
        return [chain for chain in self.chains if chain.problem]


async def prune_usage(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    apply: bool,
    now: dt.datetime | None = None,
    on_chain: Callable[[ChainPrune, int], None] | None = None,
) -> PruneReport:
    """Prune every chain with records before the cut-off (a dry run unless ``apply``);
    ``on_chain(result, chains in all)`` after each."""
    cutoffs = Cutoffs.of(settings, now)
    key = checkpoint_key(settings.usage.checkpoint_key, settings.auth.secret_key)
    report = PruneReport(cutoffs, apply)
    async with sessions() as session:
        found = await session.scalars(
            select(UsageRecord.chain).where(UsageRecord.at < cutoffs.raw_from).distinct()
        )
        chains = sorted(found)
    for chain in chains:
        result = await _prune_chain(sessions, chain, cutoffs.raw_from, key, apply, now)
        if result.problem:
            log.error("usage retention left chain %s alone: %s", chain, result.problem)
        report.chains.append(result)
        if on_chain is not None:
            on_chain(result, len(chains))
    async with sessions() as session, session.begin():
        old = UsageDaily.day < cutoffs.daily_from
        if apply:
            removed = await session.execute(delete(UsageDaily).where(old))
            report.daily_rows = cast_result(removed).rowcount
        else:
            report.daily_rows = await session.scalar(select(func.count()).where(old)) or 0
    return report


async def _prune_chain(
    sessions: async_sessionmaker[AsyncSession],
    chain: str,
    cutoff: dt.datetime,
    key: bytes,
    apply: bool,
    now: dt.datetime | None,
) -> ChainPrune:
    async with sessions() as session:  # verify first, holding no lock
        check = await verify_chain(session, chain, key)
        if not check.ok:
            return ChainPrune(chain, 0, 0, f"it does not verify: {check.problem}")
        start = await latest_checkpoint(session, chain)
    async with sessions() as session, session.begin():
        head = await session.scalar(
            select(UsageChain).where(UsageChain.chain == chain).with_for_update()
        )
        latest = await latest_checkpoint(session, chain)
        begun = start.seq if start else 0
        if (latest.seq if latest else 0) != begun:
            return ChainPrune(chain, 0, latest.seq if latest else 0, "another pruner moved it")
        first_kept = await session.scalar(
            select(func.min(UsageRecord.seq)).where(
                UsageRecord.chain == chain, UsageRecord.at >= cutoff
            )
        )
        last = first_kept - 1 if first_kept is not None else (head.seq if head else 0)
        if last <= begun:
            return ChainPrune(chain, 0, begun)
        in_range = (UsageRecord.chain == chain, UsageRecord.seq > begun, UsageRecord.seq <= last)
        count = await session.scalar(select(func.count()).where(*in_range)) or 0
        if not apply:
            return ChainPrune(chain, count, last)
        last_hash = await session.scalar(
            select(UsageRecord.hash).where(UsageRecord.chain == chain, UsageRecord.seq == last)
        )
        if last_hash is None:  # verified a moment ago, and nothing deletes but this job
            return ChainPrune(chain, 0, begun, f"record {last} vanished while pruning")
        await _add_daily(session, *in_range)
        created_at = now or dt.datetime.now(dt.UTC)
        session.add(
            UsageCheckpoint(
                chain=chain,
                seq=last,
                hash=last_hash,
                pruned=count,
                pruned_before=cutoff,
                created_at=created_at,
                key_id=key_id(key),
                signature=sign(key, chain, last, last_hash, created_at),
            )
        )
        await session.execute(delete(UsageRecord).where(*in_range))
    return ChainPrune(chain, count, last)


async def _add_daily(session: AsyncSession, *where: ColumnElement[bool]) -> None:
    """Add the totals of the records ``where`` selects to the daily rows (a day may be pruned
    in more than one run)."""
    day = utc_day(session)
    columns = (UsageRecord.chain, UsageRecord.account_pk, UsageRecord.tool, UsageRecord.tier)
    totals = (
        select(
            day,
            *columns,
            UsageRecord.status,
            func.count(),
            func.coalesce(func.sum(UsageRecord.cost_units), 0),
            func.coalesce(func.sum(UsageRecord.duration_us), 0),
        )
        .where(*where)
        .group_by(day, *columns, UsageRecord.status)
    )
    rows = [
        {
            "day": as_date(day),
            "chain": chain,
            "account_pk": account_pk,
            "tool": tool,
            "tier": tier,
            "status": status,
            "calls": calls,
            "cost_units": units,
            "duration_us": duration,
        }
        for day, chain, account_pk, tool, tier, status, calls, units, duration in (
            await session.execute(totals)
        )
    ]
    if not rows:
        return
    dialect_insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    statement = dialect_insert(UsageDaily).values(rows)
    added = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["chain", "day", "tool", "tier", "status"],
            set_={
                "calls": UsageDaily.calls + added.calls,
                "cost_units": UsageDaily.cost_units + added.cost_units,
                "duration_us": UsageDaily.duration_us + added.duration_us,
            },
        )
    )


@asynccontextmanager
async def pruning_usage(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[None]:
    """Prune at once and then every ``KAMIYO_USAGE_PRUNE_EVERY_S`` while the block runs
    (``kamiyo worker``); 0 prunes never."""
    every = settings.usage.prune_every_s
    if not every:
        yield
        return

    async def loop() -> None:
        while True:
            try:
                report = await prune_usage(sessions, settings, apply=True)
                log.info(
                    "usage retention: %d records of %d chain(s) folded into daily totals, %d "
                    "daily rows past retention removed",
                    report.records,
                    len(report.chains),
                    report.daily_rows,
                )
            except Exception:  # the database away: try again next time, keep working
                log.exception("usage retention failed; trying again in %.0f s", every)
            await asyncio.sleep(every)

    async with closing.in_background(loop(), "kamiyo-usage-retention"):
        yield

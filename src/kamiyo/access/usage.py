"""What callers and operators read about usage: the get_usage answer and the breakdowns."""

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.meter import UsageEvent
from kamiyo.db.engine import dialect_name
from kamiyo.db.usage import UsageDaily, UsageRecord
from kamiyo.payments.bundles import BundleState

# Calls that reached the tool, bad arguments included (refusals are recorded but are not usage).
ANSWERED = ("ok", "error", "invalid")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Window(_Frozen):
    limit: int
    used: int
    remaining: int
    resets_in_seconds: int = Field(description="When the window frees up again.")


class MonthUsage(_Frozen):
    since: dt.date = Field(description="First day of this calendar month (UTC).")
    calls: int = Field(description="Calls answered this month, including failed ones.")
    cost_units: int = Field(description="Billable units: successful calls.")


class UsageReport(_Frozen):
    tier: str
    max_results: int
    minute: Window | None = Field(
        description="Requests in the last 60 seconds; null when limits are not enforced "
        "or cannot be read right now."
    )
    day: Window | None = Field(description="Requests in the current 24-hour quota window.")
    month: MonthUsage | None = Field(
        description="This account's calls this month; null for anonymous callers."
    )
    bundle: BundleState | None = Field(
        default=None, description="The bundle of prepaid calls named by bundle_token, if any."
    )


def month_start(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def month_usage(
    session: AsyncSession, account_pk: int, unwritten: Sequence[UsageEvent] = ()
) -> MonthUsage:
    """Recorded calls this month plus those still waiting to be written."""
    since = month_start(dt.datetime.now(dt.UTC))
    calls, units = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(UsageRecord.cost_units), 0)).where(
                UsageRecord.account_pk == account_pk,
                UsageRecord.at >= since,
                UsageRecord.status.in_(ANSWERED),
            )
        )
    ).one()
    pruned_calls, pruned_units = (  # days already folded into daily totals (retention.py)
        await session.execute(
            select(
                func.coalesce(func.sum(UsageDaily.calls), 0),
                func.coalesce(func.sum(UsageDaily.cost_units), 0),
            ).where(
                UsageDaily.account_pk == account_pk,
                UsageDaily.day >= since.date(),
                UsageDaily.status.in_(ANSWERED),
            )
        )
    ).one()
    calls, units = calls + pruned_calls, units + pruned_units
    pending = [e for e in unwritten if e.at >= since and e.status in ANSWERED]
    return MonthUsage(
        since=since.date(),
        calls=calls + len(pending),
        cost_units=units + sum(e.cost_units for e in pending),
    )


class Breakdown(StrEnum):
    DAY = "day"
    TOOL = "tool"
    STATUS = "status"


class UsageRow(_Frozen):
    key: str
    calls: int
    cost_units: int
    mean_duration_ms: float


async def usage_breakdown(
    session: AsyncSession, account_pk: int | None, since: dt.datetime, by: Breakdown
) -> list[UsageRow]:
    """Calls since ``since`` grouped by day, tool or status (every status, refusals too)."""
    day = (  # the UTC calendar day; SQLite keeps datetimes as UTC text
        func.date(UsageRecord.at)
        if dialect_name(session) == "sqlite"
        else cast(func.timezone("UTC", UsageRecord.at), Date)
    )
    column = {
        Breakdown.DAY: day,
        Breakdown.TOOL: UsageRecord.tool,
        Breakdown.STATUS: UsageRecord.status,
    }[by]
    raw = await session.execute(
        select(
            column,
            func.count(),
            func.coalesce(func.sum(UsageRecord.cost_units), 0),
            func.coalesce(func.sum(UsageRecord.duration_us), 0),
        )
        .where(UsageRecord.account_pk == account_pk, UsageRecord.at >= since)
        .group_by(column)
    )
    # Days older than the raw retention are daily totals (access/retention.py): whole days,
    # so the first day of the range counts in full there.
    daily_column = {
        Breakdown.DAY: UsageDaily.day,
        Breakdown.TOOL: UsageDaily.tool,
        Breakdown.STATUS: UsageDaily.status,
    }[by]
    pruned = await session.execute(
        select(
            daily_column,
            func.sum(UsageDaily.calls),
            func.sum(UsageDaily.cost_units),
            func.sum(UsageDaily.duration_us),
        )
        .where(
            UsageDaily.account_pk == account_pk,
            UsageDaily.day >= since.astimezone(dt.UTC).date(),
        )
        .group_by(daily_column)
    )
    totals: dict[str, tuple[int, int, int]] = {}
    for key, calls, units, duration in [*raw, *pruned]:
        before = totals.get(str(key), (0, 0, 0))
        totals[str(key)] = (before[0] + calls, before[1] + units, before[2] + int(duration))
    return [
        UsageRow(
            key=key,
            calls=calls,
            cost_units=units,
            mean_duration_ms=round(duration / calls / 1000, 3) if calls else 0.0,
        )
        for key, (calls, units, duration) in sorted(totals.items())
    ]

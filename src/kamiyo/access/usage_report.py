"""An account's calls per day, tool and status, for the dashboard's usage charts and CSV.

Read straight from ``usage_records`` (not a catalogue operation: it is a view of the account's
own meter, like ``kamiyo usage show``), plus the events the meter holds but has not written yet,
so a call made a second ago is counted, plus the daily totals of days already pruned.
"""

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.meter import UsageEvent
from kamiyo.db.engine import dialect_name
from kamiyo.db.usage import UsageDaily, UsageRecord


class StatusGroup(StrEnum):
    """What a person reads a status as: answered, turned away by the gate, or failed."""

    OK = "ok"
    REFUSED = "refused"
    ERROR = "error"


# Failed calls: bad arguments, a tool that failed, a server that could not answer. Every other
# status but ok is the gate's refusal (rate_limited, forbidden, unauthenticated, ...).
FAILED = frozenset({"error", "invalid", "unavailable"})


def status_group(status: str) -> StatusGroup:
    if status == "ok":
        return StatusGroup.OK
    return StatusGroup.ERROR if status in FAILED else StatusGroup.REFUSED


@dataclass(frozen=True, slots=True)
class DailyCount:
    day: dt.date
    tool: str
    status: str
    calls: int


def days_back(days: int, now: dt.datetime | None = None) -> list[dt.date]:
    """The last ``days`` UTC calendar days, oldest first, today last."""
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    return [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]


async def daily_counts(
    session: AsyncSession,
    account_pk: int,
    first_day: dt.date,
    unwritten: Sequence[UsageEvent] = (),
) -> list[DailyCount]:
    """Calls from ``first_day`` (UTC) on, by day, tool and status, ordered that way."""
    since = dt.datetime.combine(first_day, dt.time(), dt.UTC)
    day = (  # the UTC calendar day; SQLite keeps datetimes as UTC text
        func.date(UsageRecord.at)
        if dialect_name(session) == "sqlite"
        else cast(func.timezone("UTC", UsageRecord.at), Date)
    )
    rows = await session.execute(
        select(day, UsageRecord.tool, UsageRecord.status, func.count())
        .where(UsageRecord.account_pk == account_pk, UsageRecord.at >= since)
        .group_by(day, UsageRecord.tool, UsageRecord.status)
    )
    pruned = await session.execute(  # older days, folded into daily totals (retention.py)
        select(UsageDaily.day, UsageDaily.tool, UsageDaily.status, func.sum(UsageDaily.calls))
        .where(UsageDaily.account_pk == account_pk, UsageDaily.day >= first_day)
        .group_by(UsageDaily.day, UsageDaily.tool, UsageDaily.status)
    )
    counts: Counter[tuple[dt.date, str, str]] = Counter()
    for when, tool, status, calls in [*rows, *pruned]:
        on = when if isinstance(when, dt.date) else dt.date.fromisoformat(str(when))
        counts[on, tool, status] += calls
    for event in unwritten:
        if event.account_pk == account_pk and event.at >= since:
            counts[event.at.astimezone(dt.UTC).date(), event.tool, event.status] += 1
    return [DailyCount(d, tool, status, n) for (d, tool, status), n in sorted(counts.items())]

"""Totals of incidents and losses, grouped by chain, year, month or attack type."""

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.stats import IncidentDayStats, IncidentMonthStats
from kamiyo.db.tables import Incident
from kamiyo.intel.models import Stats, StatsGroup, StatsQuery, StatsRow
from kamiyo.intel.scope import Scope

OPEN = Scope()
# A nominal figure (the face value of tokens minted or frozen, not money taken) is shown on
# its incident but never summed: one such figure would dominate a total silently.
COUNTED_LOSS = case((Incident.loss_usd_basis == "nominal", None), else_=Incident.loss_usd)
ALL_CHAINS = ""  # the chain of the totals that count every incident once

_MULTI_CHAIN_NOTE = (
    "An incident on several chains counts once for each chain, so chain rows can add up to "
    "more than the totals."
)


Period = tuple[
    type[IncidentDayStats] | type[IncidentMonthStats], Any, dt.date | None, dt.date | None
]


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _periods(first: dt.date | None, last: dt.date | None) -> list[Period]:
    """The days ``first`` to ``last`` (None: open-ended) as totals to read: the whole months
    from the monthly ones, the days before and after them from the daily ones."""
    months_from = first if first is None or first.day == 1 else _next_month(first)
    months_to = last
    if last is not None and _next_month(last) - dt.timedelta(days=1) != last:
        months_to = last.replace(day=1) - dt.timedelta(days=1)  # the last whole month's end
    if months_from is not None and months_to is not None and months_from > months_to:
        return [(IncidentDayStats, IncidentDayStats.day, first, last)]
    periods: list[Period] = [(IncidentMonthStats, IncidentMonthStats.month, months_from, months_to)]
    if first is not None and months_from is not None and first < months_from:
        periods.append((IncidentDayStats, IncidentDayStats.day, first, months_from - _DAY))
    if last is not None and months_to is not None and months_to < last:
        periods.append((IncidentDayStats, IncidentDayStats.day, months_to + _DAY, last))
    return periods


_DAY = dt.timedelta(days=1)


def _keys(group_by: StatsGroup, totals: Any, period: Any) -> list[ColumnElement[Any]]:
    if group_by is StatsGroup.CHAIN:
        return [totals.chain.expression]
    if group_by is StatsGroup.ATTACK_TYPE:
        return [totals.attack_type.expression]
    keys: list[ColumnElement[Any]] = [cast(func.extract("year", period), Integer)]
    if group_by is StatsGroup.MONTH:
        keys.append(cast(func.extract("month", period), Integer))
    return keys


async def incident_stats(session: AsyncSession, query: StatsQuery, scope: Scope = OPEN) -> Stats:
    """Read from the pre-aggregated totals (``stats_summary``): whole months from the monthly
    ones, the partial months at the ends of the range from the daily ones, a few thousand rows
    whatever the number of incidents."""
    last = min((d for d in (query.until, scope.hide_after) if d), default=None)
    grouped: dict[tuple[Any, ...], list[Any]] = {}
    count, loss = 0, 0.0
    for totals, period, start, end in _periods(query.since, last):
        in_range: list[ColumnElement[bool]] = []
        if start is not None:
            in_range.append(period >= start)
        if end is not None:
            in_range.append(period <= end)
        # The rows counting each incident once: the overall ones, or the chain's asked for.
        counted_once = totals.chain == (query.chain or ALL_CHAINS)
        rows_read = counted_once
        if query.group_by is StatsGroup.CHAIN and not query.chain:
            rows_read = totals.chain != ALL_CHAINS
        keys = _keys(query.group_by, totals, period)
        measures = (
            func.sum(totals.incidents),
            func.sum(totals.loss_usd),
            func.sum(totals.with_loss),
        )
        stmt = select(*keys, *measures).where(rows_read, *in_range).group_by(*keys)
        for *group, n, key_loss, with_loss in await session.execute(stmt):
            sums = grouped.setdefault(tuple(group), [0, 0.0, 0])
            sums[0] += n
            sums[1] += key_loss
            sums[2] += with_loss
        overall = select(func.coalesce(func.sum(totals.incidents), 0), func.sum(totals.loss_usd))
        period_count, period_loss = (
            await session.execute(overall.where(counted_once, *in_range))
        ).one()
        count += period_count
        loss += period_loss or 0.0
    rows = []
    for key, (n, key_loss, with_loss) in grouped.items():
        label = "-".join(
            f"{part:02d}" if isinstance(part, int) and i else str(part)
            for i, part in enumerate(key)
        )
        rows.append(
            StatsRow(
                key=label,
                incidents=n,
                total_loss_usd=round(float(key_loss or 0), 2),
                incidents_with_loss=with_loss,
            )
        )
    if query.group_by in (StatsGroup.YEAR, StatsGroup.MONTH):
        rows.sort(key=lambda r: r.key)
    else:
        rows.sort(key=lambda r: (-r.total_loss_usd, -r.incidents, r.key))
    return Stats(
        group_by=query.group_by,
        rows=rows,
        incidents=count,
        total_loss_usd=round(float(loss), 2),
        note=_MULTI_CHAIN_NOTE if query.group_by is StatsGroup.CHAIN else None,
    )

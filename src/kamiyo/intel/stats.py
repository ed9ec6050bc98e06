"""Totals of incidents and losses, grouped by chain, year, month or attack type."""

from typing import Any

from sqlalchemy import ColumnElement, Integer, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident
from kamiyo.db.tables import IncidentDayStats as Day
from kamiyo.intel.models import Stats, StatsGroup, StatsQuery, StatsRow
from kamiyo.intel.scope import Scope

OPEN = Scope()
# A nominal figure (the face value of tokens minted or frozen, not money taken) is shown on
# its incident but never summed: one such figure would dominate a total silently.
COUNTED_LOSS = case((Incident.loss_usd_basis == "nominal", None), else_=Incident.loss_usd)
ALL_CHAINS = ""  # the chain of the daily totals that count every incident once

_MULTI_CHAIN_NOTE = (
    "An incident on several chains counts once for each chain, so chain rows can add up to "
    "more than the totals."
)


async def incident_stats(session: AsyncSession, query: StatsQuery, scope: Scope = OPEN) -> Stats:
    """Read from the pre-aggregated daily totals (``stats_summary``): a few thousand rows
    whatever the number of incidents."""
    days: list[ColumnElement[bool]] = []
    if scope.hide_after:
        days.append(Day.day <= scope.hide_after)
    if query.since:
        days.append(Day.day >= query.since)
    if query.until:
        days.append(Day.day <= query.until)
    # The rows counting each incident once: the overall ones, or those of the chain asked for.
    counted_once = Day.chain == (query.chain or ALL_CHAINS)

    keys: list[ColumnElement[Any]]
    if query.group_by is StatsGroup.CHAIN:
        keys = [Day.chain.expression]
        grouped_rows = counted_once if query.chain else Day.chain != ALL_CHAINS
    else:
        grouped_rows = counted_once
        if query.group_by is StatsGroup.ATTACK_TYPE:
            keys = [Day.attack_type.expression]
        else:
            keys = [cast(func.extract("year", Day.day), Integer)]
            if query.group_by is StatsGroup.MONTH:
                keys.append(cast(func.extract("month", Day.day), Integer))

    measures = (func.sum(Day.incidents), func.sum(Day.loss_usd), func.sum(Day.with_loss))
    grouped = select(*keys, *measures).where(grouped_rows, *days).group_by(*keys)
    rows = []
    for *key, count, loss, with_loss in await session.execute(grouped):
        label = "-".join(
            f"{part:02d}" if isinstance(part, int) and i else str(part)
            for i, part in enumerate(key)
        )
        rows.append(
            StatsRow(
                key=label,
                incidents=count,
                total_loss_usd=round(float(loss or 0), 2),
                incidents_with_loss=with_loss,
            )
        )
    if query.group_by in (StatsGroup.YEAR, StatsGroup.MONTH):
        rows.sort(key=lambda r: r.key)
    else:
        rows.sort(key=lambda r: (-r.total_loss_usd, -r.incidents, r.key))

    count, loss = (
        await session.execute(
            select(func.coalesce(func.sum(Day.incidents), 0), func.sum(Day.loss_usd)).where(
                counted_once, *days
            )
        )
    ).one()
    return Stats(
        group_by=query.group_by,
        rows=rows,
        incidents=count,
        total_loss_usd=round(float(loss or 0), 2),
        note=_MULTI_CHAIN_NOTE if query.group_by is StatsGroup.CHAIN else None,
    )

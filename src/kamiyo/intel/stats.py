"""Totals of incidents and losses, grouped by chain, year, month or attack type."""

from typing import Any

from sqlalchemy import ColumnElement, Integer, case, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident, IncidentChain
from kamiyo.intel.models import Stats, StatsGroup, StatsQuery, StatsRow
from kamiyo.intel.scope import Scope

OPEN = Scope()
# A nominal figure (the face value of tokens minted or frozen, not money taken) is shown on
# its incident but never summed: one such figure would dominate a total silently.
COUNTED_LOSS = case((Incident.loss_usd_basis == "nominal", None), else_=Incident.loss_usd)

_MULTI_CHAIN_NOTE = (
    "An incident on several chains counts once for each chain, so chain rows can add up to "
    "more than the totals."
)


async def incident_stats(session: AsyncSession, query: StatsQuery, scope: Scope = OPEN) -> Stats:
    conditions: list[ColumnElement[bool]] = []
    if scope.hide_after:
        conditions.append(Incident.date <= scope.hide_after)
    if query.since:
        conditions.append(Incident.date >= query.since)
    if query.until:
        conditions.append(Incident.date <= query.until)
    if query.chain:
        conditions.append(
            exists().where(
                IncidentChain.incident_pk == Incident.pk, IncidentChain.chain == query.chain
            )
        )

    keys: list[ColumnElement[Any]]
    if query.group_by is StatsGroup.CHAIN:
        keys = [IncidentChain.chain.expression]
    elif query.group_by is StatsGroup.ATTACK_TYPE:
        keys = [Incident.attack_type.expression]
    else:
        keys = [cast(func.extract("year", Incident.date), Integer)]
        if query.group_by is StatsGroup.MONTH:
            keys.append(cast(func.extract("month", Incident.date), Integer))

    measures = (
        func.count(Incident.pk),
        func.coalesce(func.sum(COUNTED_LOSS), 0.0),
        func.count(COUNTED_LOSS),
    )
    grouped = select(*keys, *measures).select_from(Incident).where(*conditions)
    if query.group_by is StatsGroup.CHAIN:
        grouped = grouped.join(IncidentChain, IncidentChain.incident_pk == Incident.pk)
        if query.chain:
            grouped = grouped.where(IncidentChain.chain == query.chain)
    rows = []
    for *key, count, loss, with_loss in await session.execute(grouped.group_by(*keys)):
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
            select(func.count(Incident.pk), func.coalesce(func.sum(COUNTED_LOSS), 0.0)).where(
                *conditions
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

"""Keeping ``incident_day_stats`` and ``incident_month_stats`` (the stats call's pre-aggregated
totals) up to date.

Every write to incidents reads what the written incidents added to the totals before it
(:func:`contributions`), writes, reads what they add after it, and applies the difference
(:func:`apply`) in the same transaction: an ingest that rolls back leaves the totals as they were,
and a stats call reads a row per day, attack type and chain instead of every incident. The
migration that created the table filled it from the incidents already stored.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.engine import dialect_name
from kamiyo.db.stats import IncidentDayStats, IncidentMonthStats
from kamiyo.db.tables import Base, Incident
from kamiyo.intel.stats import ALL_CHAINS, COUNTED_LOSS

_CHUNK = 500  # pks per read, well under SQLite's limit on bound parameters

Key = tuple[str, dt.date, str]  # chain, day, attack type


@dataclass
class Totals:
    incidents: int = 0
    loss_usd: float = 0.0
    with_loss: int = 0


async def contributions(session: AsyncSession, pks: Iterable[int]) -> dict[Key, Totals]:
    """What the incidents ``pks`` (those that exist) add to each row of the totals."""
    found: dict[Key, Totals] = defaultdict(Totals)
    wanted = sorted(set(pks))
    for start in range(0, len(wanted), _CHUNK):
        rows = await session.execute(
            select(
                Incident.date,
                Incident.attack_type,
                COUNTED_LOSS,
                Incident.chain_list,
            )
            .where(Incident.pk.in_(wanted[start : start + _CHUNK]))
            .order_by(Incident.pk)
        )
        for day, attack_type, loss, chains in rows:
            count(found, day, attack_type, loss, chains)
    return found


def count(
    found: dict[Key, Totals],
    day: dt.date,
    attack_type: str,
    counted_loss: float | None,
    chains: Iterable[str],
) -> None:
    """Add one incident to ``found``: to the overall row and to each of its chains' rows
    (``counted_loss``: its loss as ``COUNTED_LOSS`` reads it, None for a nominal figure)."""
    for chain in (ALL_CHAINS, *sorted(set(chains))):
        totals = found[(chain, day, attack_type)]
        totals.incidents += 1
        if counted_loss is not None:
            totals.loss_usd += counted_loss
            totals.with_loss += 1


async def apply(session: AsyncSession, before: dict[Key, Totals], after: dict[Key, Totals]) -> None:
    """Move the stored totals (daily and monthly) from ``before`` to ``after`` (both from
    :func:`contributions`)."""
    days: dict[Key, Totals] = {}
    months: dict[Key, Totals] = defaultdict(Totals)
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, Totals()), after.get(key, Totals())
        delta = Totals(
            incidents=new.incidents - old.incidents,
            loss_usd=new.loss_usd - old.loss_usd,
            with_loss=new.with_loss - old.with_loss,
        )
        if delta == Totals():
            continue
        days[key] = delta
        chain, day, attack_type = key
        month = months[(chain, day.replace(day=1), attack_type)]
        month.incidents += delta.incidents
        month.loss_usd += delta.loss_usd
        month.with_loss += delta.with_loss
    await _add(session, IncidentDayStats.__tablename__, "day", days)
    await _add(session, IncidentMonthStats.__tablename__, "month", months)


async def _add(session: AsyncSession, name: str, period: str, deltas: dict[Key, Totals]) -> None:
    changes = [
        {
            "chain": chain,
            period: day,
            "attack_type": attack_type,
            "incidents": delta.incidents,
            "loss_usd": delta.loss_usd,
            "with_loss": delta.with_loss,
        }
        for (chain, day, attack_type), delta in deltas.items()
        if delta != Totals()
    ]
    if not changes:
        return
    table = Base.metadata.tables[name]
    upsert = (postgresql if dialect_name(session) == "postgresql" else sqlite).insert(table)
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[table.c.chain, table.c[period], table.c.attack_type],
            set_={
                column: table.c[column] + upsert.excluded[column]
                for column in ("incidents", "loss_usd", "with_loss")
            },
        ),
        changes,
    )
    emptied = [key for key, delta in deltas.items() if delta.incidents < 0]
    if emptied:  # a row whose last incident left: gone, so no group shows zero incidents
        await session.execute(
            delete(table).where(
                table.c.chain == bindparam("chain"),
                table.c[period] == bindparam(period),
                table.c.attack_type == bindparam("attack_type"),
                table.c.incidents == 0,
            ),
            [{"chain": c, period: d, "attack_type": a} for c, d, a in emptied],
        )

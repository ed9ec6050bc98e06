"""Keeping ``incident_day_stats`` (the stats call's pre-aggregated totals) up to date.

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
from kamiyo.db.tables import Base, Incident, IncidentDayStats
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
            for chain in (ALL_CHAINS, *sorted(set(chains))):
                totals = found[(chain, day, attack_type)]
                totals.incidents += 1
                if loss is not None:
                    totals.loss_usd += loss
                    totals.with_loss += 1
    return found


async def apply(session: AsyncSession, before: dict[Key, Totals], after: dict[Key, Totals]) -> None:
    """Move the stored totals from ``before`` to ``after`` (both from :func:`contributions`)."""
    changes = []
    emptied: list[Key] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, Totals()), after.get(key, Totals())
        delta = Totals(
            incidents=new.incidents - old.incidents,
            loss_usd=new.loss_usd - old.loss_usd,
            with_loss=new.with_loss - old.with_loss,
        )
        if delta == Totals():
            continue
        chain, day, attack_type = key
        changes.append(
            {
                "chain": chain,
                "day": day,
                "attack_type": attack_type,
                "incidents": delta.incidents,
                "loss_usd": delta.loss_usd,
                "with_loss": delta.with_loss,
            }
        )
        if delta.incidents < 0:
            emptied.append(key)
    if not changes:
        return
    table = Base.metadata.tables[IncidentDayStats.__tablename__]
    upsert = (postgresql if dialect_name(session) == "postgresql" else sqlite).insert(table)
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[table.c.chain, table.c.day, table.c.attack_type],
            set_={
                name: table.c[name] + upsert.excluded[name]
                for name in ("incidents", "loss_usd", "with_loss")
            },
        ),
        changes,
    )
    if emptied:  # a row whose last incident left: gone, so no group shows zero incidents
        await session.execute(
            delete(table).where(
                table.c.chain == bindparam("c"),
                table.c.day == bindparam("d"),
                table.c.attack_type == bindparam("a"),
                table.c.incidents == 0,
            ),
            [{"c": c, "d": d, "a": a} for c, d, a in emptied],
        )

"""Values that start with what someone has typed so far: protocol names and incident ids.

What MCP argument completion offers. Each look-up is one query with a LIMIT that also counts
every match (a window count), so a client completing on every keystroke costs one cheap read.
Prefixes match case-insensitively, and as text: ``%`` and ``_`` are not wildcards.
"""

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from kamiyo.db.tables import Incident as IncidentRow

_ESCAPE = "\\"


@dataclass(frozen=True, slots=True)
class Matches:
    """The first values that match, and how many match in all."""

    values: list[str]
    total: int


def _starts_with(column: InstrumentedAttribute[str], prefix: str) -> ColumnElement[bool]:
    escaped = "".join(_ESCAPE + ch if ch in "%_" + _ESCAPE else ch for ch in prefix.lower())
    return func.lower(column).like(escaped + "%", escape=_ESCAPE)


async def _first(session: AsyncSession, stmt: Select[str, int], limit: int) -> Matches:
    rows = (await session.execute(stmt.limit(limit))).all()
    return Matches([row[0] for row in rows], rows[0][1] if rows else 0)


async def protocol_names(
    session: AsyncSession, prefix: str, hide_after: dt.date | None, limit: int
) -> Matches:
    """Protocol names (as incidents carry them) starting with ``prefix``, alphabetically in any
    case; only those of incidents dated on or before ``hide_after`` when it is set."""
    stmt = select(IncidentRow.protocol, func.count().over()).where(
        _starts_with(IncidentRow.protocol, prefix)
    )
    if hide_after is not None:
        stmt = stmt.where(IncidentRow.date <= hide_after)
    # Ordered the same on every backend: SQLite's default collation puts upper case first.
    lowered = func.lower(IncidentRow.protocol)
    stmt = stmt.group_by(IncidentRow.protocol).order_by(lowered, IncidentRow.protocol)
    return await _first(session, stmt, limit)


async def incident_ids(
    session: AsyncSession, prefix: str, hide_after: dt.date | None, limit: int
) -> Matches:
    """Incident ids starting with ``prefix``, newest first; only those of incidents dated on
    or before ``hide_after`` when it is set."""
    stmt = select(IncidentRow.id, func.count().over()).where(_starts_with(IncidentRow.id, prefix))
    if hide_after is not None:
        stmt = stmt.where(IncidentRow.date <= hide_after)
    stmt = stmt.order_by(IncidentRow.date.desc(), IncidentRow.pk.desc())
    return await _first(session, stmt, limit)

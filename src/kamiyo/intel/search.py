"""Finding incidents: filtered full-text search and look-up by id."""

import datetime as dt
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import (
    Incident as IncidentRow,
)
from kamiyo.db.tables import (
    IncidentAddress,
    IncidentChain,
    IncidentName,
    IncidentReference,
    IncidentTransaction,
)
from kamiyo.intel import fulltext
from kamiyo.intel.models import (
    HARD_RESULT_CAP,
    ExploitQuery,
    Incident,
    IncidentSummary,
    SearchQuery,
    SearchResult,
    SortOrder,
    TransactionMatches,
    TransactionQuery,
)
from kamiyo.intel.scope import NotFoundError, Scope

OPEN = Scope()


def _filters(query: SearchQuery, hide_after: dt.date | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.since:
        conditions.append(IncidentRow.date >= query.since)
    if query.until:
        conditions.append(IncidentRow.date <= query.until)
    if hide_after:
        conditions.append(IncidentRow.date <= hide_after)
    if query.min_loss_usd is not None:
        conditions.append(IncidentRow.loss_usd >= query.min_loss_usd)
    if query.attack_type:
        conditions.append(IncidentRow.attack_type == query.attack_type.value)
    if query.chain:
        conditions.append(
            exists().where(
                IncidentChain.incident_pk == IncidentRow.pk, IncidentChain.chain == query.chain
            )
        )
    if query.address:
        # An address lists few incidents: start from them rather than test every incident.
        conditions.append(
            IncidentRow.pk.in_(
                select(IncidentAddress.incident_pk).where(IncidentAddress.address == query.address)
            )
        )
    return conditions


def matching(
    columns: tuple[Any, ...],
    query: SearchQuery,
    dialect: str,
    *,
    hide_after: dt.date | None = None,
    protocol_only: bool = False,
) -> tuple[Select[Any], ColumnElement[float] | None]:
    """A select of ``columns`` over the incidents ``query`` matches, and the text rank if any."""
    stmt = select(*columns).where(*_filters(query, hide_after))
    if not query.terms:
        return stmt, None
    return fulltext.match(stmt, dialect, query.terms, protocol_only=protocol_only)


async def search_incidents(
    session: AsyncSession,
    query: SearchQuery,
    scope: Scope = OPEN,
    *,
    protocol_only: bool = False,
) -> SearchResult:
    """Incidents matching ``query``, at most ``min(query.limit, scope.max_results)`` of them.

    ``scope.hide_after`` drops incidents dated later than it (a delayed feed for some callers);
    ``protocol_only`` matches the query words against protocol names alone.
    """
    limit = min(query.limit, scope.max_results) if scope.max_results else query.limit
    stmt, rank = matching(
        _SUMMARY_COLUMNS,
        query,
        dialect_name(session),
        hide_after=scope.hide_after,
        protocol_only=protocol_only,
    )
    order: list[ColumnElement[Any]] = []
    if rank is not None and query.effective_sort is SortOrder.RELEVANCE:
        order.append(rank.desc())
    if query.effective_sort is SortOrder.LOSS:
        order.append(IncidentRow.loss_usd.desc().nulls_last())
    order += [IncidentRow.date.desc(), IncidentRow.pk.desc()]
    rows = (await session.execute(stmt.order_by(*order).limit(limit + 1))).all()
    summaries = [IncidentSummary.model_validate(_summary_fields(row)) for row in rows[:limit]]
    return SearchResult(
        incidents=summaries, count=len(summaries), truncated=len(rows) > limit, limit=limit
    )


# What a search row carries: the summary fields, read in the search query itself.
_SUMMARY_COLUMNS = (
    IncidentRow.pk,
    IncidentRow.id,
    IncidentRow.date,
    IncidentRow.date_precision,
    IncidentRow.protocol,
    IncidentRow.loss_usd,
    IncidentRow.loss_usd_basis,
    IncidentRow.loss_text,
    IncidentRow.attack_type,
    IncidentRow.attack_type_raw,
    IncidentRow.chain_list,
    IncidentRow.source_list,
    IncidentRow.firm_list,
)


def _summary_fields(row: IncidentRow | Row[*tuple[Any, ...]]) -> dict[str, object]:
    return {
        "id": row.id,
        "date": row.date,
        "date_precision": row.date_precision,
        "protocol": row.protocol,
        "chains": row.chain_list,
        "loss_usd": row.loss_usd,
        "loss_usd_basis": row.loss_usd_basis,
        "loss_text": row.loss_text,
        "attack_type": row.attack_type,
        "attack_type_raw": row.attack_type_raw,
        "sources": row.source_list,
        "firms": row.firm_list,
    }


_Child = TypeVar("_Child", IncidentAddress, IncidentTransaction, IncidentReference)


async def _children(session: AsyncSession, table: type[_Child], pk: int) -> list[_Child]:
    rows = await session.scalars(select(table).where(table.incident_pk == pk).order_by(table.pk))
    return list(rows)


async def get_incident(session: AsyncSession, incident_id: str) -> Incident | None:
    """One incident in full, or None when no incident has that id."""
    row = await session.scalar(select(IncidentRow).where(IncidentRow.id == incident_id))
    if row is None:
        return None
    return Incident.model_validate(
        {
            **_summary_fields(row),
            "description": row.description,
            "disclosed": row.disclosed,
            "kind": row.kind,
            "status": row.status,
            "funds_returned": row.funds_returned,
            "funds_returned_usd": row.funds_returned_usd,
            "aliases": [
                name
                for name in await session.scalars(
                    select(IncidentName.name).where(IncidentName.incident_pk == row.pk)
                )
                if name != row.protocol
            ],
            "addresses": await _children(session, IncidentAddress, row.pk),
            "transactions": await _children(session, IncidentTransaction, row.pk),
            "references": await _children(session, IncidentReference, row.pk),
        }
    )


async def exploit(session: AsyncSession, query: ExploitQuery, scope: Scope = OPEN) -> Incident:
    """One incident in full; NotFoundError when there is none the caller may see."""
    incident = await get_incident(session, query.exploit_id)
    if incident is None or scope.hides(incident.date):
        raise NotFoundError(
            f"No incident with id {query.exploit_id!r}; find ids with search_exploits "
            "(they look like 20230313_eulerfinance)."
        )
    return incident


async def find_by_transaction(
    session: AsyncSession, query: TransactionQuery, scope: Scope = OPEN
) -> TransactionMatches:
    """The incidents whose attack transactions include ``query.tx_hash``, newest first."""
    limit = scope.max_results or HARD_RESULT_CAP
    listed = select(IncidentTransaction.incident_pk).where(
        IncidentTransaction.hash == query.tx_hash
    )
    stmt = select(*_SUMMARY_COLUMNS).where(IncidentRow.pk.in_(listed))
    if scope.hide_after:
        stmt = stmt.where(IncidentRow.date <= scope.hide_after)
    order = (IncidentRow.date.desc(), IncidentRow.pk.desc())
    rows = (await session.execute(stmt.order_by(*order).limit(limit + 1))).all()
    summaries = [IncidentSummary.model_validate(_summary_fields(row)) for row in rows[:limit]]
    if summaries:
        first = summaries[0]
        summary = (
            f"{query.tx_hash} is an attack transaction of {len(summaries)} incident(s), "
            f"the latest {first.protocol} on {first.date.isoformat()} ({first.id})."
        )
    else:
        summary = (
            f"{query.tx_hash} is not an attack transaction of any incident KAMIYO knows; "
            "that says nothing about the transaction itself."
        )
    return TransactionMatches(
        tx_hash=query.tx_hash,
        incidents=summaries,
        count=len(summaries),
        truncated=len(rows) > limit,
        limit=limit,
        summary=summary,
    )

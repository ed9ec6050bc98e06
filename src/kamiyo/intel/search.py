"""Finding incidents: by name, attack type and full text, filtered; and look-up by id."""

import datetime as dt
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Row,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import (
    Incident as IncidentRow,
)
from kamiyo.db.tables import (
    IncidentAddress,
    IncidentName,
    IncidentReference,
    IncidentTransaction,
)
from kamiyo.intel import pages, resolver, search_plan
from kamiyo.intel.models import (
    HARD_RESULT_CAP,
    ExploitQuery,
    Incident,
    IncidentSummary,
    SearchQuery,
    SearchResult,
    TransactionMatches,
    TransactionQuery,
)
from kamiyo.intel.scope import NotFoundError, Scope

OPEN = Scope()


def matching(
    columns: tuple[Any, ...],
    query: SearchQuery,
    dialect: str,
    *,
    hide_after: dt.date | None = None,
    protocol_only: bool = False,
) -> tuple[Select[Any], None]:
    """A select of ``columns`` over every incident ``query`` matches, in no order.

    The matches: incidents going by the query's name (its ``name_key``), those of the attack
    type the whole query names, and those whose text matches every word (``protocol_only``:
    whose names do). The second item is always None: ranks belong to :func:`search_incidents`.
    """
    shape, values = search_plan.plan(query, dialect, hide_after, protocol_only=protocol_only)
    return search_plan.matching(columns, shape).params(values), None


async def search_incidents(
    session: AsyncSession,
    query: SearchQuery,
    scope: Scope = OPEN,
    *,
    protocol_only: bool = False,
) -> SearchResult:
    """Incidents matching ``query``, at most ``min(query.limit, scope.max_results)`` of them.

    By relevance: incidents going by the query's name first ("curve finance" and "Curve" find
    the Curve incidents, above "CurveBurner"), then those of the attack type the whole query
    names ("private key": key compromises), then the other text matches by rank; other sorts
    order all of them alike (``search_plan``). A search that finds nothing offers near-miss
    names (``suggestions``, ``note``).

    ``scope.hide_after`` drops incidents dated later than it (a delayed feed for some callers);
    ``protocol_only`` matches the query words against protocol names alone.
    """
    limit = min(query.limit, scope.max_results) if scope.max_results else query.limit
    shape, values = search_plan.plan(
        query, dialect_name(session), scope.hide_after, protocol_only=protocol_only
    )
    offset = query.offset  # rows before this page are read and dropped: pages stay shallow
    wanted = offset + limit + 1
    found: list[Row[Any]] = []
    bounded = False
    for stmt in search_plan.statements(shape):  # stages in order, until the page is full
        stage = (await session.execute(stmt, {**values, "limit": wanted - len(found)})).all()
        found += stage
        # Only the ranked text stage counts its candidates (search_plan.TEXT_CANDIDATES).
        candidates = stage[0]._mapping.get("candidates", 0) if stage else 0
        bounded |= candidates >= search_plan.TEXT_CANDIDATES
        if len(found) >= wanted:
            break
    rows = found[offset:]
    summaries = [IncidentSummary.model_validate(summary_fields(row)) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = None
    if more and offset + limit <= pages.MAX_OFFSET:
        next_cursor = pages.encode(offset + limit, query.digest)
    advice = None
    if not summaries and query.query:
        filtered = bool(search_plan.filter_values(query, None))
        advice = await resolver.did_you_mean(session, query.query, filtered=filtered)
    return SearchResult(
        incidents=summaries,
        count=len(summaries),
        truncated=more,
        limit=limit,
        next_cursor=next_cursor,
        ranked_newest=search_plan.TEXT_CANDIDATES if bounded else None,
        suggestions=advice.suggestions if advice else [],
        note=advice.note if advice else None,
    )


def summary_fields(row: IncidentRow | Row[*tuple[Any, ...]]) -> dict[str, object]:
    """The ``IncidentSummary`` fields of an incident, or of a row of ``SUMMARY_COLUMNS``."""
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


_Child = type[IncidentName | IncidentAddress | IncidentTransaction | IncidentReference]
# What hangs off an incident, each as a list of rows of these columns, in this order.
_CHILDREN: tuple[tuple[str, _Child, tuple[str, ...], str], ...] = (
    ("names", IncidentName, ("name",), "key"),
    ("addresses", IncidentAddress, ("role", "chain", "address", "label"), "pk"),
    ("transactions", IncidentTransaction, ("chain", "hash"), "pk"),
    ("references", IncidentReference, ("url", "firm"), "pk"),
)


# A literal, not a parameter: a bound "[]" would be sent as the JSON string "[]".
_EMPTY_JSON_ARRAY: ColumnElement[Any] = literal_column("'[]'::json")


@lru_cache(maxsize=2)
def _incident_statement(dialect: str) -> Select[Any]:
    """The incident with id ``:incident_id`` and, as JSON arrays of arrays, its names,
    addresses, transactions and references: one statement (a look-up is one round trip)."""
    lists = []
    for label, table, names, order in _CHILDREN:
        columns = [getattr(table, name) for name in names]
        mine = table.incident_pk == IncidentRow.pk
        if dialect == "postgresql":
            ordered = aggregate_order_by(func.json_build_array(*columns), getattr(table, order))
            aggregated: Any = func.coalesce(func.json_agg(ordered), _EMPTY_JSON_ARRAY)
        else:
            # SQLite (before 3.44) takes no ORDER BY in an aggregate; it aggregates in the
            # order it reads the incident's rows from their incident_pk index: by pk (names:
            # by key, their primary key's order).
            aggregated = func.json_group_array(func.json_array(*columns))
        one = select(aggregated).where(mine).correlate(IncidentRow)
        lists.append(one.scalar_subquery().label(label))
    fields = [c for c in IncidentRow.__table__.c if c.key != "search_vector"]
    return select(*fields, *(type_coerce(part, JSON) for part in lists)).where(
        IncidentRow.id == bindparam("incident_id")
    )


async def get_incident(session: AsyncSession, incident_id: str) -> Incident | None:
    """One incident in full, or None when no incident has that id."""
    stmt = _incident_statement(dialect_name(session))
    row = (await session.execute(stmt, {"incident_id": incident_id})).first()
    if row is None:
        return None
    return Incident.model_validate(
        {
            **summary_fields(row),
            "description": row.description,
            "disclosed": row.disclosed,
            "kind": row.kind,
            "status": row.status,
            "funds_returned": row.funds_returned,
            "funds_returned_usd": row.funds_returned_usd,
            "aliases": [name for (name,) in row.names if name != row.protocol],
            "addresses": [
                {"role": role, "chain": chain, "address": address, "label": label}
                for role, chain, address, label in row.addresses
            ],
            "transactions": [{"chain": chain, "hash": tx} for chain, tx in row.transactions],
            "references": [{"url": url, "firm": firm} for url, firm in row.references],
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
    summaries, truncated = await _newest(session, listed, scope, limit)
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
        truncated=truncated,
        limit=limit,
        summary=summary,
    )


async def incidents_named(
    session: AsyncSession, key: str, scope: Scope = OPEN, limit: int = HARD_RESULT_CAP
) -> SearchResult:
    """The incidents that go by a name whose ``name_key`` is ``key`` (any report's protocol
    or alias), newest first: exactly those, unlike a search, whose words also match others."""
    limit = min(limit, scope.max_results) if scope.max_results else limit
    summaries, truncated = await _newest(session, resolver.named(key), scope, limit)
    return SearchResult(incidents=summaries, count=len(summaries), truncated=truncated, limit=limit)


async def _newest(
    session: AsyncSession, listed: Select[Any], scope: Scope, limit: int
) -> tuple[list[IncidentSummary], bool]:
    """The first ``limit`` incidents whose pks ``listed`` selects that ``scope`` shows, newest
    first, and whether more are listed."""
    stmt = select(*search_plan.SUMMARY_COLUMNS).where(IncidentRow.pk.in_(listed))
    if scope.hide_after:
        stmt = stmt.where(IncidentRow.date <= scope.hide_after)
    order = (IncidentRow.date.desc(), IncidentRow.pk.desc())
    rows = (await session.execute(stmt.order_by(*order).limit(limit + 1))).all()
    summaries = [IncidentSummary.model_validate(summary_fields(row)) for row in rows[:limit]]
    return summaries, len(rows) > limit

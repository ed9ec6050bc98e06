"""The SQL of a search, built once per shape and run with the caller's values as parameters.

A search with words is answered in stages, each a kind of match, in this order under relevance:
incidents going by the query's name (its ``name_key`` is one of theirs), then those of the attack
type the whole query names, then those whose text matches every word, by rank. Other sorts order
all of them alike. The stages are a union: disjoint (each leaves out the ones before), each
contributing at most ``limit + 1`` rows in the requested order, so the first ``limit`` rows of
the union are exactly right and one more row says whether more match. Each stage is read through
its own index (names, attack type, text); one scan of an OR of the three would not be, as
PostgreSQL reads a name subquery inside an OR row by row. PostgreSQL reads the attack-type and
text stages in one bitmap scan of both indexes (an OR it can combine), ordered by stage; SQLite
matches text by a join, so there they stay apart.

Building such a statement costs more than running it on the bundled data, so a statement is
built once per shape (backend, sort, which filters and stages) and cached; every value a caller
gives (filters, name key, attack type, match text, limit) travels as a bound parameter.
"""

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Float,
    Integer,
    Select,
    bindparam,
    case,
    exists,
    literal_column,
    or_,
    select,
    union_all,
)

from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.db.tables import IncidentAddress, IncidentChain
from kamiyo.intel import fulltext, resolver
from kamiyo.intel.models import SearchQuery, SortOrder
from kamiyo.intel.names import name_key


def filter_values(query: SearchQuery, hide_after: dt.date | None) -> dict[str, object]:
    """The filters ``query`` sets (and the scope's ``hide_after``), by parameter name."""
    values: dict[str, object] = {
        "since": query.since,
        "until": query.until,
        "hide_after": hide_after,
        "min_loss_usd": query.min_loss_usd,
        "attack_type": query.attack_type.value if query.attack_type else None,
        "chain": query.chain,
        "address": query.address,
    }
    return {name: value for name, value in values.items() if value is not None}


def _param(name: str) -> BindParameter[Any]:
    return bindparam(name, required=True)


def _conditions(filters: frozenset[str]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if "since" in filters:
        conditions.append(IncidentRow.date >= _param("since"))
    if "until" in filters:
        conditions.append(IncidentRow.date <= _param("until"))
    if "hide_after" in filters:
        conditions.append(IncidentRow.date <= _param("hide_after"))
    if "min_loss_usd" in filters:
        conditions.append(IncidentRow.loss_usd >= _param("min_loss_usd"))
    if "attack_type" in filters:
        conditions.append(IncidentRow.attack_type == _param("attack_type"))
    if "chain" in filters:
        conditions.append(
            exists().where(
                IncidentChain.incident_pk == IncidentRow.pk, IncidentChain.chain == _param("chain")
            )
        )
    if "address" in filters:
        # An address lists few incidents: start from them rather than test every incident.
        listed = select(IncidentAddress.incident_pk).where(
            IncidentAddress.address == _param("address")
        )
        conditions.append(IncidentRow.pk.in_(listed))
    return conditions


@dataclass(frozen=True, slots=True)
class Shape:
    """What decides a search statement's SQL (values aside)."""

    dialect: str
    sort: SortOrder
    filters: frozenset[str]
    words: bool  # the query has words: text matches
    exact: bool  # ... and a name key: exact-name matches
    typed: bool  # ... and names an attack type as a whole
    protocol_only: bool


def plan(
    query: SearchQuery,
    dialect: str,
    hide_after: dt.date | None,
    *,
    protocol_only: bool = False,
) -> tuple[Shape, dict[str, object]]:
    """The shape of the statement answering ``query``, and its parameters (but the limit)."""
    values = filter_values(query, hide_after)
    text = query.query or ""
    words = query.terms
    key = name_key(text) if words else ""
    attack = resolver.query_attack_type(text) if words and not protocol_only else None
    if words:
        values["match"] = fulltext.query_text(dialect, words, protocol_only=protocol_only)
    if key:
        values["name_key"] = key
    if attack:
        values["typed"] = attack.value
    shape = Shape(
        dialect=dialect,
        sort=query.effective_sort,
        filters=frozenset(filter_values(query, hide_after)),
        words=bool(words),
        exact=bool(key),
        typed=attack is not None,
        protocol_only=protocol_only,
    )
    return shape, values


def matching(columns: tuple[Any, ...], shape: Shape) -> Select[Any]:
    """A select of ``columns`` over every incident a query of ``shape`` matches, in no order."""
    stmt = select(*columns).where(*_conditions(shape.filters))
    if not shape.words:
        return stmt
    parts = [fulltext.matching_pks(shape.dialect, _param("match"))]
    if shape.exact:
        parts.append(resolver.named(_param("name_key")))
    if shape.typed:
        parts.append(select(IncidentRow.pk).where(IncidentRow.attack_type == _param("typed")))
    return stmt.where(IncidentRow.pk.in_(union_all(*parts)))


_NO_RANK = literal_column("0.0", Float)


def _order(sort: SortOrder, columns: Any = IncidentRow) -> list[ColumnElement[Any]]:
    """The order of ``sort`` over the summary columns (``columns``: of a subquery instead),
    after the stage and rank that order relevance."""
    order: list[ColumnElement[Any]] = []
    if sort is SortOrder.LOSS:
        order.append(columns.loss_usd.desc().nulls_last())
    return [*order, columns.date.desc(), columns.pk.desc()]


# What a search row carries: the summary fields, read in the search query itself.
SUMMARY_COLUMNS = (
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


@lru_cache(maxsize=512)
def statement(shape: Shape) -> Select[Any]:
    """The search statement of ``shape`` selecting the summary columns (and, with words,
    ``stage`` and ``rank``); its parameters: those of :func:`plan`, and ``limit``."""
    filters = _conditions(shape.filters)
    limit = bindparam("limit", type_=Integer, required=True)
    relevance = shape.sort is SortOrder.RELEVANCE
    if not shape.words:
        stmt = select(*SUMMARY_COLUMNS).where(*filters)
        return stmt.order_by(*_order(shape.sort)).limit(limit)
    parts: list[Select[Any]] = []
    earlier: list[ColumnElement[bool]] = []

    def add(
        conditions: list[ColumnElement[bool]],
        stage: ColumnElement[int] | None = None,
        rank: ColumnElement[float] | None = None,
        *,
        text_join: bool = False,
    ) -> None:
        """One part: rows meeting ``conditions``; ``stage`` (default: the part's number) and
        ``rank`` (default: none) order them under relevance."""
        stmt = select(*SUMMARY_COLUMNS).where(*filters, *earlier, *conditions)
        if text_join:  # SQLite's text match is a join, and its rank exists only with it
            stmt, rank = fulltext.match(stmt, shape.dialect, _param("match"))
        within: list[ColumnElement[Any]] = []
        if relevance and stage is not None:
            within.append(stage)
        if relevance and rank is not None:
            within.append(rank.desc())
        shown_stage = literal_column(str(len(parts)), Integer) if stage is None else stage
        shown_rank = rank if rank is not None and relevance else _NO_RANK
        stmt = stmt.add_columns(shown_stage.label("stage"), shown_rank.label("rank"))
        parts.append(stmt.order_by(*within, *_order(shape.sort)).limit(limit))

    if shape.exact:
        exact = IncidentRow.pk.in_(resolver.named(_param("name_key")))
        add([exact])
        earlier.append(~exact)
    if shape.dialect == "postgresql":
        matches, rank = fulltext.postgres_match(_param("match"))
        if shape.typed:
            # One bitmap scan of both indexes (attack type, text), the typed rows first and
            # newest first, as on SQLite.
            typed = IncidentRow.attack_type == _param("typed")
            stage = case((typed, len(parts)), else_=len(parts) + 1)
            add([or_(typed, matches)], stage, case((typed, _NO_RANK), else_=rank))
        else:
            add([matches], rank=rank)
    else:
        if shape.typed:
            add([IncidentRow.attack_type == _param("typed")])
            earlier.append(IncidentRow.attack_type != _param("typed"))
        add([], text_join=True)
    if len(parts) == 1:
        return parts[0]
    # Wrapped, as SQLite takes no ORDER BY or LIMIT in a member of a compound select.
    combined = union_all(*(select(part.subquery()) for part in parts)).subquery()
    first = [combined.c.stage, combined.c.rank.desc()] if relevance else []
    return select(combined).order_by(*first, *_order(shape.sort, combined.c)).limit(limit)

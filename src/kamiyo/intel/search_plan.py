"""The SQL of a search, built once per shape and run with the caller's values as parameters.

A search with words is answered in stages, each a kind of match, in this order under relevance:
incidents going by the query's name (its ``name_key`` is one of theirs), then those of the attack
type the whole query names, then those whose text matches every word, by rank. Other sorts order
all of them alike. The stages are disjoint (each leaves out the ones before), each read
through its own index (names, attack type, text) in the requested order, at most ``limit``
rows. Under relevance the text stage ranks only the most recently recorded
``TEXT_CANDIDATES`` matches, so its cost is bounded whatever the number of incidents; with an
attack-type stage the stages run one after another until the page is full, so a broad query
("price manipulation") whose attack-type stage fills the page never ranks its text matches,
and without one the name and text stages are one union (a name's incidents never fill a page
alone). Other sorts run one union of the stages, whose first ``limit`` rows are exactly right; there
PostgreSQL reads the attack-type and text stages in one bitmap scan of both indexes (an OR it
can combine), while SQLite matches text by a join, so they stay apart. One scan of an OR of
all three would not use the indexes, as PostgreSQL reads a name subquery inside an OR row by
row. One more row than the page says whether more match.

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
    exists,
    func,
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


def _conditions(filters: frozenset[str], *, on_chains: bool = False) -> list[ColumnElement[bool]]:
    """The filters as conditions on incidents (``on_chains``: the date, loss and chain ones on
    ``incident_chains``, a statement reading incidents through their chain rows)."""
    conditions: list[ColumnElement[bool]] = []
    dated: Any = IncidentChain if on_chains else IncidentRow
    if "since" in filters:
        conditions.append(dated.date >= _param("since"))
    if "until" in filters:
        conditions.append(dated.date <= _param("until"))
    if "hide_after" in filters:
        conditions.append(dated.date <= _param("hide_after"))
    if "min_loss_usd" in filters:
        conditions.append(dated.loss_usd >= _param("min_loss_usd"))
    if "attack_type" in filters:
        conditions.append(IncidentRow.attack_type == _param("attack_type"))
    if "chain" in filters and on_chains:
        conditions.append(IncidentChain.chain == _param("chain"))
    elif "chain" in filters:
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
_NO_CANDIDATES = literal_column("0", Integer)  # a stage that ranks no bounded candidates


def _order(sort: SortOrder, columns: Any = IncidentRow) -> list[ColumnElement[Any]]:
    """The order of ``sort`` over the summary columns (``columns``: of a subquery instead),
    after the stage and rank that order relevance."""
    order: list[ColumnElement[Any]] = []
    if sort is SortOrder.LOSS:
        order.append(columns.loss_usd.desc().nulls_last())
    return [*order, columns.date.desc(), columns.pk.desc()]


class _ChainOrder:
    """The order columns of incidents read through their chain rows (``_order``'s columns)."""

    loss_usd = IncidentChain.loss_usd
    date = IncidentChain.date
    pk = IncidentChain.incident_pk


# The text matches a search by relevance ranks: the most recently recorded this many. A broad
# word ("price") matches a fifth of a million incidents; ranking all of them costs time in
# proportion (265 ms at 100,000 on SQLite), while both backends read the newest 2,000 matches
# in index order and stop, and rank those in a few milliseconds. 2,000 is twice the deepest
# page (pages.MAX_OFFSET) and more than anyone reads of a broad search; ``ranked_newest`` in
# the answer says when the bound was reached.
TEXT_CANDIDATES = 2000


def _ranked_newest(
    matches: Select[Any],
    rank: ColumnElement[float],
    stage: ColumnElement[int],
    shape: Shape,
    limit: BindParameter[int],
) -> Select[Any]:
    """The text stage under relevance: the ``TEXT_CANDIDATES`` most recently recorded of
    ``matches``, by ``rank``, and (``candidates``) how many there were. The candidates carry
    only their pk, date and rank; the page's rows alone are read in full."""
    newest = (
        matches.with_only_columns(IncidentRow.pk, IncidentRow.date, rank.label("rank"))
        .order_by(fulltext.recorded_order(shape.dialect))
        .limit(TEXT_CANDIDATES)
        .subquery()
    )
    best = (
        select(newest, func.count().over().label("candidates"))
        .order_by(newest.c.rank.desc(), *_order(shape.sort, newest.c))
        .limit(limit)
        .subquery()
    )
    return (
        select(*SUMMARY_COLUMNS, stage.label("stage"), best.c.rank, best.c.candidates)
        .join_from(best, IncidentRow, IncidentRow.pk == best.c.pk)
        .order_by(best.c.rank.desc(), *_order(shape.sort, best.c))
    )


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
def statements(shape: Shape) -> tuple[Select[Any], ...]:
    """The statements answering a search of ``shape``, selecting the summary columns (and, with
    words, ``stage`` and ``rank``); their parameters: those of :func:`plan`, and ``limit``.

    Under relevance with an attack-type stage, one statement per stage, in stage order: the
    caller runs them in turn and stops once it has the rows it needs, so a broad query whose
    attack type fills the page never ranks its text matches. Otherwise one statement: under
    relevance the name stage then the text stage, whose ranking is bounded
    (``TEXT_CANDIDATES``); under other sorts every match ordered alike.
    """
    filters = _conditions(shape.filters)
    limit = bindparam("limit", type_=Integer, required=True)
    relevance = shape.sort is SortOrder.RELEVANCE
    if not shape.words and "chain" in shape.filters:
        # The chain's incidents in order from its own index (ix_incident_chains_recent or
        # _loss), date and loss filters read there too: a rare chain's newest incidents
        # without testing every newer incident of every other chain.
        stmt = (
            select(*SUMMARY_COLUMNS)
            .select_from(IncidentChain)
            .join(IncidentRow, IncidentRow.pk == IncidentChain.incident_pk)
            .where(*_conditions(shape.filters, on_chains=True))
        )
        ordered = _order(shape.sort, _ChainOrder)
        return (stmt.order_by(*ordered).limit(limit),)
    if not shape.words:
        stmt = select(*SUMMARY_COLUMNS).where(*filters)
        return (stmt.order_by(*_order(shape.sort)).limit(limit),)
    parts: list[Select[Any]] = []
    earlier: list[ColumnElement[bool]] = []

    def add(
        conditions: list[ColumnElement[bool]],
        rank: ColumnElement[float] | None = None,
        *,
        text_join: bool = False,
    ) -> None:
        """One stage: rows meeting ``conditions``, by ``rank`` (default: none) under relevance."""
        stmt = select(*SUMMARY_COLUMNS).where(*filters, *earlier, *conditions)
        if text_join:  # SQLite's text match is a join, and its rank exists only with it
            stmt, rank = fulltext.match(stmt, shape.dialect, _param("match"))
        within = [rank.desc()] if relevance and rank is not None else []
        shown_rank = rank if rank is not None and relevance else _NO_RANK
        stage = literal_column(str(len(parts)), Integer)
        if relevance and rank is not None:
            parts.append(_ranked_newest(stmt, rank, stage, shape, limit))
            return
        stmt = stmt.add_columns(
            stage.label("stage"), shown_rank.label("rank"), _NO_CANDIDATES.label("candidates")
        )
        parts.append(stmt.order_by(*within, *_order(shape.sort)).limit(limit))

    if shape.exact:
        exact = IncidentRow.pk.in_(resolver.named(_param("name_key")))
        add([exact])
        earlier.append(~exact)
    typed = IncidentRow.attack_type == _param("typed")
    if shape.typed and (relevance or shape.dialect != "postgresql"):
        add([typed])
        earlier.append(IncidentRow.attack_type != _param("typed"))
    if shape.dialect == "postgresql":
        matches, rank = fulltext.postgres_match(_param("match"))
        if shape.typed and not relevance:
            # All alike: one bitmap scan of both indexes (attack type, text).
            add([or_(typed, matches)])
        else:
            add([matches], rank=rank)
    else:
        add([], text_join=True)
    if len(parts) == 1:
        return tuple(parts)
    if relevance and shape.typed:
        return tuple(parts)  # the attack type's incidents may fill the page: stop there
    # Wrapped, as SQLite takes no ORDER BY or LIMIT in a member of a compound select.
    combined = union_all(*(select(part.subquery()) for part in parts)).subquery()
    # Under relevance, a name's few incidents, then its ranked text matches (bounded: one
    # statement costs no more than the two the text stage would follow anyway).
    first = [combined.c.stage, combined.c.rank.desc()] if relevance else []
    return (select(combined).order_by(*first, *_order(shape.sort, combined.c)).limit(limit),)

"""Full-text search, the one part of the store that differs per backend.

SQLite: an FTS5 table ``incident_search`` (rowid = ``incidents.pk``) ranked by bm25.
PostgreSQL: a weighted ``tsvector`` column ``incidents.search_vector`` with a GIN index,
ranked by ``ts_rank``. Both index the same Python-normalised terms (``text.py``) and match every
query word as a prefix, so both find the same incidents: a word matches the protocol field as
typed (names are indexed unstemmed) or the attack and description fields by its stem. User text
reaches neither as syntax: words hold only letters and digits, and they travel as bound
parameters.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVarTuple

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    delete,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import column
from sqlalchemy.sql.expression import ColumnClause

from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import Incident
from kamiyo.intel.text import index_terms, name_terms, stem

_fts = table(
    "incident_search", column("rowid"), column("protocol"), column("attack"), column("body")
)
_fts_ref: ColumnClause[Any] = literal_column("incident_search")
_search_vector = literal_column("incidents.search_vector", type_=TSVECTOR)

# Field weights: a protocol-name hit outranks an attack-type hit outranks a description hit.
_BM25_WEIGHTS = (10.0, 4.0, 1.0)

# One statement for a whole batch of documents, passed as arrays: an executemany of
# single-row updates costs a round trip per incident.
_PG_UPDATE = text(
    "UPDATE incidents SET search_vector = "
    "setweight(to_tsvector('simple', d.protocol), 'A') || "
    "setweight(to_tsvector('simple', d.attack), 'B') || "
    "setweight(to_tsvector('simple', d.body), 'C') "
    "FROM unnest(CAST(:pks AS integer[]), CAST(:protocols AS text[]), "
    "CAST(:attacks AS text[]), CAST(:bodies AS text[])) AS d(pk, protocol, attack, body) "
    "WHERE incidents.pk = d.pk"
)


_Row = TypeVarTuple("_Row")


@dataclass(frozen=True, slots=True)
class SearchDocument:
    pk: int
    protocol: str
    attack: str
    body: str


def document(
    pk: int, protocol: str, attack_type: str, attack_raw: str | None, description: str | None
) -> SearchDocument:
    """The indexed terms of one incident; the attack category is indexed in words too."""
    attack = f"{attack_type.replace('_', ' ')} {attack_raw or ''}"
    return SearchDocument(
        pk=pk,
        protocol=name_terms(protocol),
        attack=index_terms(attack),
        body=index_terms(description),
    )


async def write_documents(session: AsyncSession, documents: Sequence[SearchDocument]) -> None:
    if not documents:
        return
    pks = [d.pk for d in documents]
    if dialect_name(session) == "postgresql":
        await session.execute(
            _PG_UPDATE,
            {
                "pks": pks,
                "protocols": [d.protocol for d in documents],
                "attacks": [d.attack for d in documents],
                "bodies": [d.body for d in documents],
            },
        )
        return
    await session.execute(delete(_fts).where(_fts.c.rowid.in_(pks)))
    await session.execute(
        _fts.insert(),
        [
            {"rowid": d.pk, "protocol": d.protocol, "attack": d.attack, "body": d.body}
            for d in documents
        ],
    )


async def delete_documents(session: AsyncSession, pks: Sequence[int]) -> None:
    """Drop search rows of deleted incidents (PostgreSQL's column goes with its row)."""
    if pks and dialect_name(session) != "postgresql":
        await session.execute(delete(_fts).where(_fts.c.rowid.in_(pks)))


def query_text(dialect: str, words: Sequence[str], *, protocol_only: bool = False) -> str:
    """The backend's match syntax for ``words``: every word a prefix, matched as typed against
    names and by its stem against attack and description text (``protocol_only``: names alone).

    Passed to :func:`match` and :func:`matching_pks` as a bound parameter, never spliced into SQL.
    """
    if dialect == "postgresql":
        # Weight A holds the names, B and C the attack wording and the description.
        if protocol_only:
            return " & ".join(f"{w}:*A" for w in words)
        # A word that is its own stem matches every field alike: one prefix scan of the GIN
        # index, not two (every lexeme carries weight A, B or C, so ``:*`` is the same set).
        return " & ".join(f"{w}:*" if stem(w) == w else f"({w}:*A | {stem(w)}:*BC)" for w in words)

    def phrase(term: str) -> str:
        return '"' + term.replace('"', '""') + '"*'

    if protocol_only:
        return "{protocol} : (" + " AND ".join(phrase(w) for w in words) + ")"
    return " AND ".join(
        f"({{protocol}} : {phrase(w)} OR {{attack body}} : {phrase(stem(w))})" for w in words
    )


def matching_pks(dialect: str, query: ColumnElement[str]) -> Select[Any]:
    """The pks of the incidents matching ``query`` (:func:`query_text`), to combine with others."""
    if dialect == "postgresql":
        return select(Incident.pk).where(_search_vector.op("@@")(func.to_tsquery("simple", query)))
    return select(_fts.c.rowid).where(_fts_ref.match(query))


def postgres_match(query: ColumnElement[str]) -> tuple[ColumnElement[bool], ColumnElement[float]]:
    """PostgreSQL only: the condition that an incident matches ``query`` (:func:`query_text`),
    to combine with other indexed conditions in one scan, and its rank."""
    tsquery = func.to_tsquery("simple", query)
    rank: ColumnElement[float] = func.ts_rank(_search_vector, tsquery, type_=Float)
    return _search_vector.op("@@")(tsquery), rank


def match(
    stmt: Select[*_Row], dialect: str, query: ColumnElement[str]
) -> tuple[Select[*_Row], ColumnElement[float]]:
    """``stmt`` narrowed to incidents matching ``query`` (:func:`query_text`), and a rank
    (higher is better)."""
    if dialect == "postgresql":
        condition, rank = postgres_match(query)
        return stmt.where(condition), rank
    narrowed = stmt.join(_fts, _fts.c.rowid == Incident.pk).where(_fts_ref.match(query))
    # bm25 is lower-is-better; negate it so both backends sort rank descending.
    return narrowed, -func.bm25(_fts_ref, *_BM25_WEIGHTS, type_=Float)


def recorded_order(dialect: str) -> ColumnElement[Any]:
    """Most recently recorded first (pk descending), over a statement narrowed by :func:`match`:
    the order both backends read text matches in cheaply and stop early. SQLite's must be the
    search table's rowid (FTS5 then reads its index backwards); ordering by ``incidents.pk``
    would make it test every incident against the index instead."""
    if dialect == "postgresql":
        return Incident.pk.desc()
    return _fts.c.rowid.desc()

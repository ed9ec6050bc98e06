"""Which incidents are a protocol's own, which are only related, and what a name may mean.

A protocol's own incidents are those going by a name with the query's name key
(``names.name_key``: "aave v3", "Aave" and "AAVE" are one key; an incident answers to every name
its reports use, so "Axie Infinity" finds Ronin's). Related, listed and never counted:

- ``name_contains``: incidents of a name that merely contains the protocol's name as whole words
  ("AAVEBoost", "GoodCompound": integrations, forks and look-alikes), not "Compounder";
- ``fork``: incidents of registry protocols whose ``forkedFrom`` names the protocol;
- ``registry_child``: incidents of registry protocols whose parent is the protocol's.

A name with no incident and no registry record of its own is not scored: the names containing
it, else the near misses of ``resolver.did_you_mean`` ("eulr": Euler Finance), are returned as
candidates. So is a key that two registry families share: the record to score is not known.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Row, Text, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.db.tables import IncidentChain, IncidentName, ProtocolRow
from kamiyo.intel import resolver
from kamiyo.intel.names import name_key, name_similarity, name_words
from kamiyo.intel.reports import ProtocolRecord
from kamiyo.intel.search_plan import SUMMARY_COLUMNS
from kamiyo.intel.stats import COUNTED_LOSS

# What is read of each incident: the summary, and what the model needs besides.
COLUMNS = (
    *SUMMARY_COLUMNS,
    COUNTED_LOSS.label("counted_loss"),
    IncidentRow.funds_returned_usd,
)
# Names shorter than this are contained in too many others to relate them ("x", "lw").
MIN_CONTAINED_KEY = 3
MAX_CANDIDATES = 10
# How alike (names.name_similarity) a near miss must be to the whole name asked for.
WHOLE_NAME_SIMILARITY = 75.0


@dataclass(frozen=True, slots=True)
class RelatedRow:
    row: Row[Any]
    relation: str
    via: str  # the related name


@dataclass(slots=True)
class Resolution:
    key: str
    name: str  # the name to show: the protocol's own spelling, else the query's
    own: list[Row[Any]] = field(default_factory=list)  # newest first
    related: list[RelatedRow] = field(default_factory=list)  # newest first
    record: ProtocolRecord | None = None
    exploited_parents: tuple[str, ...] = ()
    candidates: list[str] = field(default_factory=list)
    # With a chain asked for and no own incident on it: own incidents on other chains.
    elsewhere: list[Row[Any]] = field(default_factory=list)

    @property
    def resolved(self) -> bool:
        return bool(self.own) or self.record is not None


def _visible(chain: str | None, hide_after: dt.date | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if hide_after is not None:
        conditions.append(IncidentRow.date <= hide_after)
    if chain is not None:
        conditions.append(
            exists().where(
                IncidentChain.incident_pk == IncidentRow.pk, IncidentChain.chain == chain
            )
        )
    return conditions


_NEWEST = (IncidentRow.date.desc(), IncidentRow.pk.desc())


async def _named(
    session: AsyncSession, keys: Sequence[str], conditions: list[ColumnElement[bool]]
) -> list[Row[Any]]:
    if not keys:
        return []
    named = select(IncidentName.incident_pk).where(IncidentName.key.in_(keys))
    stmt = select(*COLUMNS).where(IncidentRow.pk.in_(named), *conditions).order_by(*_NEWEST)
    return list((await session.execute(stmt)).all())


def _contains(words: tuple[str, ...], name: str) -> bool:
    """Whether ``name``'s words hold ``words`` as a run ("aave" in "AAVE Boost")."""
    theirs = name_words(name)
    size = len(words)
    return any(theirs[at : at + size] == words for at in range(len(theirs) - size + 1))


async def _containing(
    session: AsyncSession, key: str, words: tuple[str, ...], conditions: list[ColumnElement[bool]]
) -> list[tuple[Row[Any], str]]:
    """Incidents with a name of another key holding ``words``, each once, newest first."""
    if len(key) < MIN_CONTAINED_KEY:
        return []
    stmt = (
        select(*COLUMNS, IncidentName.name)
        .join(IncidentName, IncidentName.incident_pk == IncidentRow.pk)
        .where(IncidentName.key.contains(key), IncidentName.key != key, *conditions)
        .order_by(*_NEWEST)
    )
    found: dict[int, tuple[Row[Any], str]] = {}
    for row in await session.execute(stmt):
        if row.pk not in found and _contains(words, row.name):
            found[row.pk] = (row, row.name)
    return list(found.values())


async def _registry(session: AsyncSession, key: str) -> list[ProtocolRow]:
    return list(await session.scalars(select(ProtocolRow).where(ProtocolRow.key == key)))


async def _registry_related(
    session: AsyncSession, key: str, name: str, records: Sequence[ProtocolRow]
) -> list[tuple[str, str]]:
    """(relation, key) of registry protocols that fork this one or sit under its parent."""
    families = {r.parent or r.slug for r in records} | {key}
    children = await session.scalars(
        select(ProtocolRow.key).where(ProtocolRow.parent.in_(families), ProtocolRow.key != key)
    )
    related = [("registry_child", child) for child in children]
    forked = cast(ProtocolRow.record["forked_from"], Text)
    forks = await session.execute(
        select(ProtocolRow.key, ProtocolRow.record).where(
            func.lower(forked).contains(name_words(name)[0] if name_words(name) else key),
            ProtocolRow.key != key,
        )
    )
    for fork_key, record in forks:
        if any(name_key(parent) == key for parent in record.get("forked_from") or []):
            related.append(("fork", fork_key))
    return related


async def _exploited(session: AsyncSession, parents: Sequence[str]) -> tuple[str, ...]:
    """Those of ``parents`` (names) with an incident on record."""
    keys = {name_key(parent): parent for parent in parents}
    found = await session.scalars(
        select(IncidentName.key).where(IncidentName.key.in_(keys)).distinct()
    )
    hit = set(found)
    return tuple(parent for key, parent in keys.items() if key in hit)


def _shown_name(own: Sequence[Row[Any]], key: str, fallback: str) -> str:
    """The spelling most own incidents carry as their protocol, the first one's on ties."""
    spellings: list[str] = [row.protocol for row in reversed(own) if name_key(row.protocol) == key]
    if not spellings:
        return fallback
    return max(spellings, key=spellings.count)


async def resolve(
    session: AsyncSession, text: str, chain: str | None, hide_after: dt.date | None
) -> Resolution:
    """What ``text`` names: its own incidents, related ones, its registry record, or candidates."""
    key = name_key(text)
    words = name_words(text)
    conditions = _visible(chain, hide_after)
    own = await _named(session, [key], conditions)
    records = await _registry(session, key)
    resolution = Resolution(key=key, name=_shown_name(own, key, text.strip()), own=own)
    contained = await _containing(session, key, words, conditions)
    if not own and chain is not None:
        resolution.elsewhere = await _named(session, [key], _visible(None, hide_after))
        resolution.name = _shown_name(resolution.elsewhere, key, resolution.name)
    if not own and not records:
        if resolution.elsewhere:
            return resolution  # the name is known: no candidates for it
        shown = dict.fromkeys(row.protocol for row, _ in contained)
        resolution.candidates = list(shown)[:MAX_CANDIDATES]
        if not resolution.candidates:
            advice = await resolver.did_you_mean(session, text, filtered=False)
            # Near misses of the whole name only: one of its words ("finance") a letter from
            # another name ("Binance") is no candidate for the protocol.
            resolution.candidates = [
                name
                for name in advice.suggestions
                if name_similarity(key, name_key(name)) >= WHOLE_NAME_SIMILARITY
            ]
        return resolution
    families = {r.parent or r.slug for r in records}
    if len(families) > 1:
        resolution.candidates = sorted({r.name for r in records})
    elif records:
        best = max(records, key=lambda r: (r.record.get("tvl_usd") or 0, r.slug))
        resolution.record = ProtocolRecord.model_validate(best.record)
        if not own:
            resolution.name = resolution.record.name
        resolution.exploited_parents = await _exploited(session, resolution.record.forked_from)
    own_pks = {row.pk for row in own}
    related = [RelatedRow(row, "name_contains", via) for row, via in contained]
    if records:  # forks and children are registry facts: none without a record
        for relation, other in await _registry_related(session, key, resolution.name, records):
            rows = await _named(session, [other], conditions)
            related += [RelatedRow(row, relation, other) for row in rows]
    seen: set[int] = set(own_pks)
    for item in sorted(related, key=lambda r: (r.row.date, r.row.pk), reverse=True):
        if item.row.pk not in seen:
            seen.add(item.row.pk)
            resolution.related.append(item)
    return resolution

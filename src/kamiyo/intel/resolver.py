"""What a search names: a protocol by any of its names, an attack type, or a near miss of one.

Names are compared only through :func:`kamiyo.intel.names.name_key`, as de-duplication compares
them: "Curve Finance", "curve" and "CurveFinance" are one key, and an incident answers to the key
of every name its reports use ("Axie Infinity" is a name of the Ronin incident). A query whose
key is one of those keys names those incidents exactly.

A query that finds nothing may be a near miss ("eulr", "uniwsap"): :func:`did_you_mean` offers
the known names one or two edits away (rapidfuzz's Levenshtein distance over name keys). The
names come from ``incident_names`` and the ``protocols`` registry, kept in memory per process
and per database. The cache is checked, not trusted: a look-up reads a fingerprint of both
tables (row counts, highest incident pk, latest update) in one small query, at most once every
``RECHECK_AFTER_S`` seconds per database, and rebuilds when it changed; so an ingest or an
operator's correction shows within seconds without anyone having to call :func:`invalidate`
(which empties the cache: for tests, and for code that has just changed the names). Only
searches that found nothing consult it.
"""

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein
from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident, IncidentName, ProtocolRow
from kamiyo.intel.names import name_key
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import AttackType, attack_type_for_query

MAX_SUGGESTIONS = 5
# Keys shorter than this are too short to guess at ("ab" is two edits from every short name).
MIN_SUGGEST_LENGTH = 3
# Up to this length one edit is a near miss; longer keys allow two ("uniwsap" for "uniswap").
ONE_EDIT_UP_TO = 4


def named(key: str | ColumnElement[str]) -> Select[Any]:
    """The pks of the incidents that go by a name whose key is ``key`` (a value or a bound
    parameter)."""
    return select(IncidentName.incident_pk).where(IncidentName.key == key)


# --- attack types a whole query names --------------------------------------------------------


def query_attack_type(text: str) -> AttackType | None:
    """The attack type the whole query names ("private key", "reentrancy attack"), or None
    (also for a query that only mentions one: "euler flash loan")."""
    return attack_type_for_query(text, whole=True)


# --- near misses ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Names:
    keys: list[str]
    shown: dict[str, str]  # key -> the name to show for it
    incidents: dict[str, int]  # key -> how many incidents go by it (0: registry only)


@dataclass(slots=True)
class _Cached:
    fingerprint: tuple[object, ...]
    checked: float  # time.monotonic() of the last fingerprint read
    names: _Names


_cache: dict[str, _Cached] = {}
_MAX_DATABASES = 8
# Searches that find nothing come in bursts (a filtered search, a typo): one fingerprint read
# per database every so often serves them all.
RECHECK_AFTER_S = 2.0


def invalidate() -> None:
    """Forget every cached name list (the next near-miss look-up reads them again)."""
    _cache.clear()


async def _fingerprint(session: AsyncSession) -> tuple[object, ...]:
    row = (
        await session.execute(
            select(
                select(func.count()).select_from(IncidentName).scalar_subquery(),
                select(func.max(IncidentName.incident_pk)).scalar_subquery(),
                select(func.max(Incident.updated_at)).scalar_subquery(),
                select(func.count()).select_from(ProtocolRow).scalar_subquery(),
                select(func.max(ProtocolRow.updated_at)).scalar_subquery(),
            )
        )
    ).one()
    return tuple(v.isoformat() if isinstance(v, dt.datetime) else v for v in row)


async def _read_names(session: AsyncSession) -> _Names:
    counts: dict[str, int] = {}
    spellings: dict[str, list[tuple[int, int, str]]] = {}
    canonical = func.sum(case((IncidentName.name == Incident.protocol, 1), else_=0))
    by_spelling = (
        select(IncidentName.key, IncidentName.name, func.count(), canonical)
        .join(Incident, Incident.pk == IncidentName.incident_pk)
        .group_by(IncidentName.key, IncidentName.name)
    )
    for key, name, count, as_protocol in await session.execute(by_spelling):
        counts[key] = counts.get(key, 0) + count
        spellings.setdefault(key, []).append((int(as_protocol or 0), count, name))
    for key, name in await session.execute(select(ProtocolRow.key, ProtocolRow.name)):
        if key and key not in counts:
            counts[key] = 0
            spellings[key] = [(0, 0, name)]
    # Show a key by the spelling most incidents carry as their protocol, else the most used
    # one; the shorter, then the first alphabetically, on ties.
    shown = {
        key: min(names, key=lambda s: (-s[0], -s[1], len(s[2]), s[2]))[2]
        for key, names in spellings.items()
    }
    return _Names(keys=sorted(counts), shown=shown, incidents=counts)


async def _names(session: AsyncSession) -> _Names:
    database = session.get_bind().engine.url.render_as_string()
    cached = _cache.get(database)
    now = time.monotonic()
    if cached is not None and now - cached.checked < RECHECK_AFTER_S:
        return cached.names
    fingerprint = await _fingerprint(session)
    if cached is not None and cached.fingerprint == fingerprint:
        cached.checked = now
        return cached.names
    names = await _read_names(session)
    if len(_cache) >= _MAX_DATABASES:
        _cache.pop(next(iter(_cache)))
    _cache[database] = _Cached(fingerprint, now, names)
    return names


def _near(key: str, names: _Names) -> list[tuple[int, int, str]]:
    """(edits, 0 for a whole name or 1 for a name's beginning, key) of the known keys within
    one or two edits of ``key``, ``key`` itself left out.

    The search matches names by their beginning too, so a typo there is a near miss as well:
    "uniwsap" is two edits from the start of "uniswapv1".
    """
    if len(key) < MIN_SUGGEST_LENGTH:
        return []
    cutoff = 1 if len(key) <= ONE_EDIT_UP_TO else 2
    found = process.extract(
        key, names.keys, scorer=Levenshtein.distance, score_cutoff=cutoff, limit=None
    )
    hits = {other: (int(edits), 0) for other, edits, _ in found if other != key}
    if len(key) > ONE_EDIT_UP_TO:
        heads = [other[: len(key)] for other in names.keys]
        starts = process.extract(
            key, heads, scorer=Levenshtein.distance, score_cutoff=cutoff, limit=None
        )
        for _, edits, at in starts:
            # No edits: the name begins with the query, which the search itself matches.
            if edits and names.keys[at] not in hits:
                hits[names.keys[at]] = (int(edits), 1)
    return [(edits, part, other) for other, (edits, part) in hits.items()]


@dataclass(frozen=True, slots=True)
class Advice:
    suggestions: list[str]
    note: str | None


async def did_you_mean(session: AsyncSession, text: str, *, filtered: bool) -> Advice:
    """What to tell a caller whose search for ``text`` found nothing.

    Near misses of the whole query's name, else of its single words, best first: fewest edits,
    whole names before beginnings of names, then the name most incidents go by. ``filtered``:
    the search had filters, so a name that does match may have had all its incidents filtered
    out; the note then says so.
    """
    names = await _names(session)
    key = name_key(text)
    with_filters = " with these filters" if filtered else ""
    if filtered and names.incidents.get(key, 0):
        count = names.incidents[key]
        return Advice(
            [],
            f"No incident matches {text!r}{with_filters}; {names.shown[key]} has {count} "
            "incident(s) without them. Relax chain, since, until, min_loss_usd, attack_type "
            "or address to see them.",
        )
    near = _near(key, names)
    if not near:
        words = {name_key(w) for w in query_terms(text)} - {key}
        near = [hit for w in sorted(words) for hit in _near(w, names)]
    ranked = sorted(set(near), key=lambda h: (h[0], h[1], -names.incidents[h[2]], h[2]))
    shown = list(dict.fromkeys(names.shown[k] for _, _, k in ranked))[:MAX_SUGGESTIONS]
    if not shown:
        return Advice([], None)
    return Advice(
        shown,
        f"No incident matches {text!r}{with_filters}. Did you mean: {', '.join(shown)}? "
        "Search again with one of these names.",
    )

"""Back-test of the protocol risk score, without looking ahead.

At each cutoff (every six months from 2021-01-01 to 2025-01-01) every protocol in the universe is
scored from its incidents dated before the cutoff only, and the target is whether it had an
incident in the twelve months from the cutoff. No registry metadata is used: the registry holds
today's audits, TVL and age, and scoring past protocols with them would leak the future (a
protocol's TVL after a hack, its audit after a breach), the flaw of published back-tests.

The universe at a cutoff: every protocol that an incident dated before the cutoff is filed under
(the name key of its protocol name), scored, as ``assess_protocol_risk`` does, from every
incident going by that name. Protocols with no incident before the cutoff cannot be scored from
history and are not in it.

Three scorers are ranked the same way: the model (``risk_model``), the original product's
formula (:func:`original_score`) and the number of past incidents. Metrics per cutoff: ROC AUC
(ties count half), precision and lift in the top 10 % and the top 50 (ties at the boundary share
the places: the expected precision of a random order among them), and the model's incident rate
per level (calibration).
"""

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident, IncidentName
from kamiyo.intel.names import name_key
from kamiyo.intel.risk_model import Level, PastIncident, level_of, quick_score
from kamiyo.intel.stats import COUNTED_LOSS
from kamiyo.intel.vocabulary import AttackType

FIRST_CUTOFF = dt.date(2021, 1, 1)
LAST_CUTOFF = dt.date(2025, 1, 1)
HORIZON_MONTHS = 12
TOP_SHARE = 0.10
TOP_COUNT = 50

Scorer = Callable[[Sequence[PastIncident], dt.date], float]


@dataclass(frozen=True, slots=True)
class Protocol:
    key: str
    filed_from: dt.date  # the first incident filed under this name
    incidents: tuple[PastIncident, ...]  # oldest first


def _months_later(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    return day.replace(year=day.year + month // 12, month=month % 12 + 1)


def cutoffs() -> list[dt.date]:
    days, day = [], FIRST_CUTOFF
    while day <= LAST_CUTOFF:
        days.append(day)
        day = _months_later(day, 6)
    return days


async def load_protocols(session: AsyncSession) -> list[Protocol]:
    """Every protocol some incident is filed under, with every incident going by its name."""
    stmt = select(
        IncidentName.key,
        Incident.pk,
        Incident.protocol,
        Incident.date,
        Incident.attack_type,
        COUNTED_LOSS.label("loss_usd"),
        Incident.funds_returned_usd,
    ).join(Incident, Incident.pk == IncidentName.incident_pk)
    by_key: defaultdict[str, dict[int, PastIncident]] = defaultdict(dict)
    filed_under: dict[str, dt.date] = {}
    for row in await session.execute(stmt):
        by_key[row.key][row.pk] = PastIncident(
            date=row.date,
            attack_type=AttackType(row.attack_type),
            loss_usd=row.loss_usd,
            funds_returned_usd=row.funds_returned_usd,
        )
        filed = name_key(row.protocol)
        filed_under[filed] = min(row.date, filed_under.get(filed, row.date))
    return [
        Protocol(key, filed_under[key], tuple(sorted(by_key[key].values(), key=lambda i: i.date)))
        for key in sorted(filed_under.keys() & by_key.keys())
    ]


# --- scorers -----------------------------------------------------------------------------


def model_score(incidents: Sequence[PastIncident], as_of: dt.date) -> float:
    return quick_score(incidents, as_of)


def incident_count(incidents: Sequence[PastIncident], as_of: dt.date) -> float:
    return float(len(incidents))


def _band(value: float, bands: Sequence[tuple[float, float]], otherwise: float) -> float:
    """The points of the first band whose bound ``value`` reaches (bands highest first)."""
    return next((points for bound, points in bands if value >= bound), otherwise)


def original_score(incidents: Sequence[PastIncident], as_of: dt.date) -> float:
    """The original product's formula, as its notes define it, over the whole history.

    Frequency (0-40) by the number of incidents: 1 -> 10, 2 -> 20, 3-4 -> 30, 5+ -> 40.
    Severity (0-30) by the average USD loss of the incidents with a figure: $50M+ 30,
    $10M+ 25, $1M+ 20, $100K+ 15, $10K+ 10, less 5 (none with a figure: 5). Recency (0-20) by
    days since the latest: up to 7 -> 20, 30 -> 15, 90 -> 10, 180 -> 5, older 2. Repeat span
    (0-10), the time from first to latest incident: 6+ months 10, 3-6 months 7, 1-3 months
    5, under a month 3; a single incident has no span (0). The original counted incidents in a
    90-day window; on this data that window leaves almost every protocol at 0, so the whole
    history before the cutoff is read instead.
    """
    if not incidents:
        return 0.0
    n = len(incidents)
    frequency = 40 if n >= 5 else 30 if n >= 3 else 10 * n
    losses = [i.loss_usd for i in incidents if i.loss_usd is not None]
    average = sum(losses) / len(losses) if losses else 0.0
    severity = _band(average, ((50e6, 30), (10e6, 25), (1e6, 20), (1e5, 15), (1e4, 10)), 5)
    first, latest = incidents[0].date, incidents[-1].date
    days = (as_of - latest).days
    recency = _band(-days, ((-7, 20), (-30, 15), (-90, 10), (-180, 5)), 2)
    span = (latest - first).days
    repeat = 0.0 if n == 1 else _band(span, ((182, 10), (91, 7), (30, 5)), 3)
    return frequency + severity + recency + repeat


SCORERS: dict[str, Scorer] = {
    "model": model_score,
    "original formula": original_score,
    "past incidents": incident_count,
}


# --- metrics -------------------------------------------------------------------------------


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The chance a random positive outranks a random negative (ties half); None without both."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        midrank = (i + j) / 2 + 1
        rank_sum += midrank * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def precision_at(scores: Sequence[float], labels: Sequence[bool], k: int) -> float:
    """Expected share of positives among the ``k`` highest scores, ties at the edge shared."""
    k = min(k, len(scores))
    if k <= 0:
        return 0.0
    ranked = sorted(zip(scores, labels, strict=True), key=lambda pair: -pair[0])
    edge = ranked[k - 1][0]
    above = [label for score, label in ranked if score > edge]
    tied = [label for score, label in ranked if score == edge]
    hits = sum(above) + sum(tied) * (k - len(above)) / len(tied)
    return hits / k


@dataclass(frozen=True, slots=True)
class ScorerResult:
    auc: float | None
    precision_top_share: float
    lift_top_share: float
    precision_top_count: float
    lift_top_count: float


@dataclass(frozen=True, slots=True)
class CutoffResult:
    cutoff: dt.date
    universe: int
    positives: int
    by_scorer: dict[str, ScorerResult]
    by_level: dict[Level, tuple[int, int]]  # level -> (protocols, of which positive)


def evaluate(protocols: Sequence[Protocol], cutoff: dt.date) -> CutoffResult:
    end = _months_later(cutoff, HORIZON_MONTHS)
    pasts: list[list[PastIncident]] = []
    labels: list[bool] = []
    for protocol in protocols:
        past = [i for i in protocol.incidents if i.date < cutoff]
        if past and protocol.filed_from < cutoff:
            pasts.append(past)
            labels.append(any(cutoff <= i.date < end for i in protocol.incidents))
    base = sum(labels) / len(labels) if labels else 0.0
    top = max(1, math.ceil(TOP_SHARE * len(labels)))
    results: dict[str, ScorerResult] = {}
    model_scores: list[float] = []
    for name, scorer in SCORERS.items():
        scores = [scorer(past, cutoff) for past in pasts]
        if name == "model":
            model_scores = scores
        share, count = precision_at(scores, labels, top), precision_at(scores, labels, TOP_COUNT)
        results[name] = ScorerResult(
            auc=roc_auc(scores, labels),
            precision_top_share=share,
            lift_top_share=share / base if base else 0.0,
            precision_top_count=count,
            lift_top_count=count / base if base else 0.0,
        )
    by_level: dict[Level, tuple[int, int]] = dict.fromkeys(Level, (0, 0))
    for score, label in zip(model_scores, labels, strict=True):
        seen, hit = by_level[level_of(score)]
        by_level[level_of(score)] = (seen + 1, hit + label)
    return CutoffResult(cutoff, len(labels), sum(labels), results, by_level)


def mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else 0.0


async def backtest(session: AsyncSession) -> list[CutoffResult]:
    protocols = await load_protocols(session)
    return [evaluate(protocols, cutoff) for cutoff in cutoffs()]

"""The protocol risk model: a 0-100 score built from named factors, each explained.

Pure functions over facts read elsewhere (``risk.py`` reads them from the store, ``backtest.py``
reads them as they stood at a past date), so the answer and the back-test run the same model.
Every factor has a value from 0 to 1, a weight in points and a one-line reason; its contribution
is value times weight, and the score is the sum of the contributions, held to 0-100.

The weights live in one table, ``risk_weights.WEIGHTS``, each with its reasoning; the severity
of each root cause in another, ``risk_weights.SEVERITY``. Incident factors (history, recency,
repeats, loss, root cause, funds returned) were checked and tuned on the bundled data by the
back-test (``docs/risk.md``); the registry factors (audits, age, TVL, category, oracles, fork
lineage) cannot be back-tested, as the registry holds today's metadata only, and their weights
come from published findings.
"""

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import Field

from kamiyo.intel.models import FrozenModel
from kamiyo.intel.risk_weights import (
    CATEGORY_EXPOSURE,
    PRICED_CATEGORIES,
    SEVERITY,
    WEIGHTS,
    FactorName,
)
from kamiyo.intel.vocabulary import AttackType

METHODOLOGY_VERSION = "risk-2026.12"
# A past incident's weight in the recency factor halves every this many days.
HALF_LIFE_DAYS = 365
# Incidents closer together than this are counted as one attack when counting repeats (a
# second report of the same event, or the same attacker coming back the next day).
SAME_EVENT_DAYS = 30
# An incident without a USD figure (a token amount, or none stated) is weighed as a typical one:
# the median counted loss of the bundled incidents. Weighing it as nothing would rank a protocol
# that lost an unpriced amount below one that lost $10K.
TYPICAL_LOSS_USD = 224_000.0


class Level(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


# The lowest score of each level, highest first. Set on the back-test's pooled scores, where the
# 12-month incident rate is about 1 % below 45, 2.5 % from 45 and 3.5 % from 65 (docs/risk.md).
LEVEL_FLOORS: tuple[tuple[float, Level], ...] = (
    (65.0, Level.CRITICAL),
    (45.0, Level.HIGH),
    (35.0, Level.MEDIUM),
    (0.0, Level.LOW),
)


@dataclass(frozen=True, slots=True)
class PastIncident:
    """What the model reads of one of the protocol's own incidents."""

    date: dt.date
    attack_type: AttackType
    loss_usd: float | None  # counted loss: None when unknown or nominal
    funds_returned_usd: float | None


@dataclass(frozen=True, slots=True)
class RegistryFacts:
    """What the model reads of a registry record (DeFiLlama metadata, as of today)."""

    audits: int | None  # DeFiLlama's status code: 0 none, 1 partly, 2 audited, 3 audited fork
    listed_at: dt.date | None
    tvl_usd: float | None
    category: str | None
    oracles: tuple[str, ...]
    forked_from: tuple[str, ...]
    exploited_parents: tuple[str, ...]  # those of forked_from with incidents on record


class Factor(FrozenModel):
    name: FactorName
    value: float = Field(description="0-1: how strongly the factor is present.")
    weight: float = Field(description="Points at value 1 (negative: lowers the score).")
    contribution: float = Field(description="value x weight: points added to the score.")
    reason: str


class Confidence(FrozenModel):
    level: Literal["low", "medium", "high"]
    incidents: int = Field(description="Own incidents the score rests on.")
    registry: bool = Field(description="Whether registry metadata was scored.")
    reason: str


@dataclass(frozen=True, slots=True)
class Assessment:
    score: float
    level: Level
    factors: list[Factor]
    confidence: Confidence


def level_of(score: float) -> Level:
    return next(level for floor, level in LEVEL_FLOORS if score >= floor)


def _log_scale(amount: float, zero_at: float, one_at: float) -> float:
    if amount <= zero_at:
        return 0.0
    return min(1.0, math.log10(amount / zero_at) / math.log10(one_at / zero_at))


def _usd(amount: float) -> str:
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if amount >= factor:
            return f"${amount / factor:,.1f}{suffix}"
    return f"${amount:,.0f}"


def _factor(name: FactorName, value: float, reason: str) -> Factor:
    weight = WEIGHTS[name].points
    value = round(max(0.0, min(1.0, value)), 4)
    return Factor(
        name=name,
        value=value,
        weight=weight,
        contribution=round(value * weight, 2),
        reason=reason,
    )


def attacks(incidents: Sequence[PastIncident]) -> int:
    """Distinct attacks: incidents at least ``SAME_EVENT_DAYS`` after the one before."""
    count, last = 0, None
    for incident in sorted(incidents, key=lambda i: i.date):
        if last is None or (incident.date - last).days >= SAME_EVENT_DAYS:
            count += 1
        last = incident.date
    return count


def incident_factors(incidents: Sequence[PastIncident], as_of: dt.date) -> list[Factor]:
    """The factors of an incident history, seen on ``as_of``."""
    if not incidents:
        return []
    n = len(incidents)
    latest = max(i.date for i in incidents)
    days = max(0, (as_of - latest).days)
    loss = sum(i.loss_usd or 0 for i in incidents)
    unpriced = sum(1 for i in incidents if i.loss_usd is None)
    weighed = loss + unpriced * TYPICAL_LOSS_USD
    returned = sum(i.funds_returned_usd or 0 for i in incidents)
    worst = max(incidents, key=lambda i: (SEVERITY[i.attack_type], i.date))
    repeats = attacks(incidents) - 1
    with_figure = n - unpriced
    loss_reason = f"{_usd(loss)} lost in the {with_figure} of {n} incident(s) with a USD figure"
    if unpriced:
        loss_reason += f"; {unpriced} without one, each weighed as {_usd(TYPICAL_LOSS_USD)}"
    return [
        _factor(
            FactorName.RECENCY,
            0.5 ** (days / HALF_LIFE_DAYS),
            f"Latest incident {latest.isoformat()}, {days} days ago; its weight halves every "
            f"{HALF_LIFE_DAYS} days.",
        ),
        _factor(
            FactorName.LOSS,
            _log_scale(weighed, 1e4, 1e9),
            loss_reason + ".",
        ),
        _factor(
            FactorName.ROOT_CAUSE,
            SEVERITY[worst.attack_type],
            f"Most telling root cause: {worst.attack_type.value} ({worst.date.isoformat()}).",
        ),
        _factor(
            FactorName.REPEATS,
            repeats / 2,
            f"Attacked {repeats} more time(s) after the first incident."
            if repeats
            else "No repeat attack on record (incidents within "
            f"{SAME_EVENT_DAYS} days count as one).",
        ),
        _factor(
            FactorName.INCIDENTS,
            1 - 0.5**n,
            f"{n} incident(s) on record, from {min(i.date for i in incidents).isoformat()}.",
        ),
        _factor(
            FactorName.FUNDS_RETURNED,
            returned / loss if loss else 0.0,
            f"{_usd(returned)} of the {_usd(loss)} lost was returned."
            if returned
            else "No funds returned on record.",
        ),
    ]


def registry_factors(registry: RegistryFacts, as_of: dt.date, loss_usd: float) -> list[Factor]:
    """The factors of a registry record: only those its metadata has values for."""
    factors: list[Factor] = []
    if registry.audits is not None:
        value = {0: 1.0, 1: 0.5}.get(registry.audits, 0.0)
        said = {0: "no audit", 1: "part of the code unaudited", 2: "audited", 3: "audited fork"}
        status = said.get(registry.audits, f"status {registry.audits}")
        factors.append(_factor(FactorName.AUDITS, value, f"Registry audit status: {status}."))
    if registry.listed_at is not None:
        days = max(0, (as_of - registry.listed_at).days)
        factors.append(
            _factor(
                FactorName.AGE,
                1 - days / 730,
                f"Listed {registry.listed_at.isoformat()}, {days} days ago.",
            )
        )
    if registry.tvl_usd is not None:
        factors.append(
            _factor(
                FactorName.TVL,
                _log_scale(registry.tvl_usd, 1e6, 1e10),
                f"{_usd(registry.tvl_usd)} locked today (registry).",
            )
        )
        if loss_usd:
            share = loss_usd / (loss_usd + registry.tvl_usd)
            factors.append(
                _factor(
                    FactorName.RELATIVE_LOSS,
                    share,
                    f"Losses are {share:.0%} of losses plus today's value locked.",
                )
            )
    category = (registry.category or "").lower()
    if category:
        factors.append(
            _factor(
                FactorName.CATEGORY,
                CATEGORY_EXPOSURE.get(category, 0.3),
                f"Category: {registry.category}.",
            )
        )
    if category in PRICED_CATEGORIES:
        count = len(registry.oracles)
        value = 1.0 if count <= 1 else 0.0
        named = ", ".join(registry.oracles) if registry.oracles else "none listed"
        factors.append(_factor(FactorName.ORACLES, value, f"Prices collateral; oracles: {named}."))
    if registry.forked_from:
        parents = ", ".join(registry.forked_from)
        reason = (
            f"Forked from {parents}; exploited: {', '.join(registry.exploited_parents)}."
            if registry.exploited_parents
            else f"Forked from {parents}; none of them has an incident on record."
        )
        factors.append(
            _factor(FactorName.FORK_LINEAGE, 1.0 if registry.exploited_parents else 0.0, reason)
        )
    return factors


def _confidence(incidents: Sequence[PastIncident], registry: bool) -> Confidence:
    n = len(incidents)
    with_figure = sum(1 for i in incidents if i.loss_usd is not None)
    level: Literal["low", "medium", "high"]
    if n >= 5 or (n >= 3 and registry):
        level = "high"
    elif n >= 2 or (n >= 1 and registry):
        level = "medium"
    else:
        level = "low"
    meta = "with" if registry else "without"
    return Confidence(
        level=level,
        incidents=n,
        registry=registry,
        reason=f"{n} own incident(s), {with_figure} with a USD loss figure, {meta} registry "
        "metadata.",
    )


def assess(
    incidents: Sequence[PastIncident], registry: RegistryFacts | None, as_of: dt.date
) -> Assessment | None:
    """The score of a protocol from its own incidents dated up to ``as_of`` and its registry
    record; None when there is neither (nothing to score from)."""
    incidents = [i for i in incidents if i.date <= as_of]
    if not incidents and registry is None:
        return None
    factors = incident_factors(incidents, as_of)
    if registry is not None:
        loss = sum(i.loss_usd or 0 for i in incidents)
        factors += registry_factors(registry, as_of, loss)
    score = round(max(0.0, min(100.0, sum(f.contribution for f in factors))), 1)
    return Assessment(
        score=score,
        level=level_of(score),
        factors=factors,
        confidence=_confidence(incidents, registry is not None),
    )


def quick_score(incidents: Sequence[PastIncident], as_of: dt.date) -> float:
    """The unclamped-to-tenths score of an incident history alone, no registry (the back-test
    ranks by it; the caller passes only incidents dated before ``as_of``)."""
    factors = incident_factors(incidents, as_of)
    return max(0.0, min(100.0, sum(f.value * f.weight for f in factors)))

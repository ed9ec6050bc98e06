"""``assess_protocol_risk``: a protocol's incident history, explained, with a risk score.

The name is resolved first (``risk_names``): the protocol's own incidents are counted, related
ones (integrations, forks, look-alike names) listed apart, and a name that resolves to nothing
gets candidates or "no incidents on record", never a score made up from nothing. The score, its
level and its factors come from ``risk_model``, the same model the back-test measures
(``docs/risk.md``). A detailed scope (the enterprise tier) adds checks: per attack type the
protocol has suffered, and per factor that raised its score.
"""

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.intel.fields import WholeNumber
from kamiyo.intel.models import Chain, FrozenModel, IncidentSummary, QueryModel
from kamiyo.intel.risk_advice import FactorCheck, factor_checks
from kamiyo.intel.risk_model import (
    METHODOLOGY_VERSION,
    Assessment,
    Confidence,
    Factor,
    Level,
    PastIncident,
    RegistryFacts,
    assess,
)
from kamiyo.intel.risk_names import Resolution, resolve
from kamiyo.intel.scope import Scope
from kamiyo.intel.search import summary_fields
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import ATTACK_CHECKS, AttackType


class ProtocolRiskQuery(QueryModel):
    protocol_name: str = Field(
        min_length=1,
        max_length=120,
        description="Protocol name, e.g. 'Euler', 'aave v3' or 'Uniswap'.",
    )
    chain: Chain = None
    limit: WholeNumber = Field(
        default=10, ge=1, le=1000, description="How many incidents (and related ones) to list."
    )

    @field_validator("protocol_name")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not query_terms(value):
            raise ValueError("needs at least one word to look for")
        return value


OPEN = Scope()

RECOMMENDATION_BASIS = (
    "Derived from the attack types in this protocol's own incident history, not from an audit "
    "or a review of its code."
)


class Recommendation(FrozenModel):
    """What to verify about a protocol, for one attack type it has suffered."""

    attack_type: AttackType
    incidents: int = Field(description="This protocol's incidents of this attack type.")
    total_loss_usd: float = Field(description="Their losses, where a USD figure is known.")
    latest: dt.date = Field(description="Date of the most recent of them.")
    checks: list[str] = Field(description="What a reviewer should verify about the protocol.")


class RelatedIncident(FrozenModel):
    incident: IncidentSummary
    relation: Literal["name_contains", "fork", "registry_child"] = Field(
        description="name_contains: another name holding this protocol's name (an integration, "
        "fork or look-alike); fork: a registry protocol forked from it; registry_child: a "
        "registry protocol under the same parent."
    )
    via: str = Field(description="The related name.")


class ProtocolRisk(FrozenModel):
    protocol: str = Field(description="The protocol as resolved (its own spelling), or the query.")
    chain: str | None
    incident_count: int = Field(description="The protocol's own incidents (related ones aside).")
    total_loss_usd: float
    first_incident: dt.date | None
    last_incident: dt.date | None
    attack_types: dict[str, int] = Field(description="Own incidents per attack type.")
    incidents: list[IncidentSummary] = Field(description="Own incidents, most recent first.")
    score: float | None = Field(
        description="0-100, higher: more signs of future incidents. Null when there is nothing "
        "to score from (no incident and no registry record, or a name not resolved)."
    )
    level: Level | None = Field(description="low < 35 <= medium < 45 <= high < 65 <= critical.")
    factors: list[Factor] = Field(description="What the score is made of, largest first.")
    confidence: Confidence | None
    methodology_version: str
    as_of: dt.date = Field(description="The day the score was computed for.")
    related: list[RelatedIncident] = Field(
        description="Incidents of integrations, forks and look-alike names: listed, not counted."
    )
    related_count: int
    candidates: list[str] = Field(
        description="Names to ask about instead, when the name is unknown, a near miss or "
        "shared by several registry protocols."
    )
    summary: str
    recommendations: list[Recommendation] | None = Field(
        default=None,
        description="Given on the enterprise tier: one entry per attack type in this history, "
        f"most incidents first, then most lost. {RECOMMENDATION_BASIS} Empty when there is no "
        "incident on record.",
    )
    factor_checks: list[FactorCheck] | None = Field(
        default=None,
        description="Given on the enterprise tier: what to verify for each factor that raised "
        "the score, largest first.",
    )


def _recommendations(rows: Sequence[Row[Any]]) -> list[Recommendation]:
    """One recommendation per attack type among ``rows``."""
    by_type: defaultdict[AttackType, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        by_type[AttackType(row.attack_type)].append(row)
    recommendations = [
        Recommendation(
            attack_type=kind,
            incidents=len(group),
            total_loss_usd=round(sum(row.counted_loss or 0 for row in group), 2),
            latest=max(row.date for row in group),
            checks=list(ATTACK_CHECKS[kind]),
        )
        for kind, group in by_type.items()
    ]
    # Most incidents, then most lost; the latest and the name only make ties deterministic.
    return sorted(
        recommendations,
        key=lambda r: (-r.incidents, -r.total_loss_usd, -r.latest.toordinal(), r.attack_type),
    )


def _registry_facts(resolution: Resolution) -> RegistryFacts | None:
    record = resolution.record
    if record is None:
        return None
    return RegistryFacts(
        audits=record.audits,
        listed_at=record.listed_at.date() if record.listed_at else None,
        tvl_usd=record.tvl_usd,
        category=record.category,
        oracles=tuple(record.oracles),
        forked_from=tuple(record.forked_from),
        exploited_parents=resolution.exploited_parents,
    )


def _summary(
    query: ProtocolRiskQuery,
    resolution: Resolution,
    assessment: Assessment | None,
    loss: float,
) -> str:
    where = f" on {query.chain}" if query.chain else ""
    asked = query.protocol_name
    if not resolution.resolved:
        if resolution.elsewhere:
            chains = sorted({c for row in resolution.elsewhere for c in row.chain_list})
            return (
                f"{resolution.name} has {len(resolution.elsewhere)} incident(s) on record, on "
                f"{', '.join(chains) or 'unstated chains'}, and none{where}: no score{where}. "
                "Ask without the chain for its history and score; no incident on this chain is "
                "not evidence of safety there."
            )
        if resolution.candidates:
            return (
                f"No protocol named '{asked}'{where} in KAMIYO's data. Did you mean: "
                f"{', '.join(resolution.candidates)}? Ask again with one of these names; an "
                "unresolved name gets no score."
            )
        return (
            f"No incidents on record{where} for '{asked}', and no registry record: no score. "
            "That is the absence of a record, not evidence of safety: KAMIYO knows publicly "
            "reported exploits, and a protocol can be unsafe without one."
        )
    assert assessment is not None  # a resolved name has incidents or a record to score
    own = resolution.own
    name = resolution.name
    top = sorted(assessment.factors, key=lambda f: -f.contribution)[:2]
    drivers = ", ".join(f"{f.name.value} {f.contribution:+.0f}" for f in top)
    meaning = (
        f"Risk {assessment.score:.0f}/100 ({assessment.level.value}, confidence "
        f"{assessment.confidence.level}; mostly {drivers}): a ranking of signs of future "
        "incidents, not a probability."
    )
    if own:
        text = (
            f"{name}{where}: {len(own)} own incident(s), the latest on "
            f"{max(r.date for r in own).isoformat()}, ${loss:,.0f} lost where a USD figure is "
            f"known. {meaning}"
        )
    else:
        text = (
            f"{name}{where}: no incidents on record, so the score rests on registry metadata "
            f"alone; that is not evidence of safety. {meaning}"
        )
    if resolution.related:
        text += (
            f" {len(resolution.related)} related incident(s) of integrations, forks or "
            "look-alike names are listed apart and not counted."
        )
    if resolution.candidates:
        text += (
            f" The name is shared by registry protocols {', '.join(resolution.candidates)}: "
            "their metadata is not scored; ask with one of them for it."
        )
    return text


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def assess_protocol(
    session: AsyncSession,
    query: ProtocolRiskQuery,
    scope: Scope = OPEN,
    *,
    today: dt.date | None = None,
) -> ProtocolRisk:
    """The risk answer for ``query.protocol_name``, scored as of ``today`` (default: today).

    Totals, score and the recommendations of a ``detailed`` scope cover every own incident the
    scope does not withhold; only the listings are capped by ``query.limit`` and
    ``scope.max_results``.
    """
    as_of = today or _today()
    resolution = await resolve(session, query.protocol_name, query.chain, scope.hide_after)
    own = resolution.own
    past = [
        PastIncident(
            date=row.date,
            attack_type=AttackType(row.attack_type),
            loss_usd=row.counted_loss,
            funds_returned_usd=row.funds_returned_usd,
        )
        for row in own
    ]
    assessment = assess(past, _registry_facts(resolution), as_of) if resolution.resolved else None
    factors = sorted(assessment.factors, key=lambda f: -f.contribution) if assessment else []
    limit = min(query.limit, scope.max_results) if scope.max_results else query.limit
    loss = round(sum(row.counted_loss or 0 for row in own), 2)
    dates = [row.date for row in own]
    return ProtocolRisk(
        protocol=resolution.name,
        chain=query.chain,
        incident_count=len(own),
        total_loss_usd=loss,
        first_incident=min(dates, default=None),
        last_incident=max(dates, default=None),
        attack_types=dict(Counter(row.attack_type for row in own).most_common()),
        incidents=[IncidentSummary.model_validate(summary_fields(row)) for row in own[:limit]],
        score=assessment.score if assessment else None,
        level=assessment.level if assessment else None,
        factors=factors,
        confidence=assessment.confidence if assessment else None,
        methodology_version=METHODOLOGY_VERSION,
        as_of=as_of,
        related=[
            RelatedIncident(
                incident=IncidentSummary.model_validate(summary_fields(item.row)),
                relation=item.relation,
                via=item.via,
            )
            for item in resolution.related[:limit]
        ],
        related_count=len(resolution.related),
        candidates=resolution.candidates,
        summary=_summary(query, resolution, assessment, loss),
        recommendations=_recommendations(own) if scope.detailed else None,
        factor_checks=factor_checks(factors) if scope.detailed else None,
    )

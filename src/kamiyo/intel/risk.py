"""What the data says about a protocol's past: facts, no scores (yet).

This answers ``assess_protocol_risk`` from incident history alone, and never infers safety from
silence: no incident on record is said as such. A detailed history adds, per attack type the
protocol has suffered, what a reviewer should check.
"""

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.intel.fields import WholeNumber
from kamiyo.intel.models import (
    Chain,
    FrozenModel,
    IncidentSummary,
    QueryModel,
    SearchQuery,
)
from kamiyo.intel.scope import Scope
from kamiyo.intel.search import matching, search_incidents
from kamiyo.intel.stats import COUNTED_LOSS
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import ATTACK_CHECKS, AttackType


class ProtocolHistoryQuery(QueryModel):
    protocol_name: str = Field(
        min_length=1, max_length=120, description="Protocol name, e.g. 'Euler' or 'Curve'."
    )
    chain: Chain = None
    limit: WholeNumber = Field(default=10, ge=1, le=1000, description="How many incidents to list.")

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


class ProtocolHistory(FrozenModel):
    protocol: str
    chain: str | None
    incident_count: int
    total_loss_usd: float
    first_incident: dt.date | None
    last_incident: dt.date | None
    attack_types: dict[str, int] = Field(description="Incidents per attack type.")
    incidents: list[IncidentSummary] = Field(description="Most recent first.")
    summary: str
    recommendations: list[Recommendation] | None = Field(
        default=None,
        description="Given on the enterprise tier: one entry per attack type in this history, "
        f"most incidents first, then most lost. {RECOMMENDATION_BASIS} Empty when there is no "
        "incident on record.",
    )


def _recommendations(rows: Sequence[Row[Any]]) -> list[Recommendation]:
    """One recommendation per attack type among ``rows`` (attack_type, loss_usd, date)."""
    by_type: defaultdict[AttackType, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        by_type[AttackType(row.attack_type)].append(row)
    recommendations = [
        Recommendation(
            attack_type=kind,
            incidents=len(group),
            total_loss_usd=round(sum(row.loss_usd or 0 for row in group), 2),
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


async def protocol_history(
    session: AsyncSession,
    query: ProtocolHistoryQuery,
    scope: Scope = OPEN,
) -> ProtocolHistory:
    """Past incidents whose protocol name matches ``query.protocol_name``, with their totals.

    The totals and the recommendations of a ``detailed`` scope cover every matching incident
    the scope does not withhold; only the listed incidents are capped by ``query.limit`` and
    ``scope.max_results``.
    """
    search = SearchQuery(
        query=query.protocol_name, chain=query.chain, sort="recent", limit=query.limit
    )
    stmt, _ = matching(
        (IncidentRow.attack_type, COUNTED_LOSS.label("loss_usd"), IncidentRow.date),
        search,
        dialect_name(session),
        hide_after=scope.hide_after,
        protocol_only=True,
    )
    rows = (await session.execute(stmt)).all()
    page = await search_incidents(
        session, search, Scope(scope.max_results, scope.hide_after), protocol_only=True
    )
    dates = [row.date for row in rows]
    loss = round(sum(row.loss_usd or 0 for row in rows), 2)
    where = f" on {query.chain}" if query.chain else ""
    if rows:
        summary = (
            f"{len(rows)} past incident(s){where} match '{query.protocol_name}', the latest on "
            f"{max(dates).isoformat()}, with ${loss:,.0f} lost where a USD figure is known. "
            "This is incident history, not a risk score."
        )
    else:
        summary = (
            f"No incident{where} in KAMIYO's data matches '{query.protocol_name}'. That is the "
            "absence of a record, not evidence of safety."
        )
    return ProtocolHistory(
        protocol=query.protocol_name,
        chain=query.chain,
        incident_count=len(rows),
        total_loss_usd=loss,
        first_incident=min(dates, default=None),
        last_incident=max(dates, default=None),
        attack_types=dict(Counter(row.attack_type for row in rows).most_common()),
        incidents=page.incidents,
        summary=summary,
        recommendations=_recommendations(rows) if scope.detailed else None,
    )

"""What the data says about a protocol's past and about an address: facts, no scores.

These answer ``assess_protocol_risk`` and ``check_wallet_interactions`` from incident history
alone, and never infer safety from silence: no incident on record is said as such. A detailed
history adds, per attack type the protocol has suffered, what a reviewer should check.
"""

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import Dataset, IncidentAddress, SourceReportRow, SourceState
from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.intel.fields import WholeNumber
from kamiyo.intel.models import (
    Address,
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
from kamiyo.intel.vocabulary import ATTACK_CHECKS, AddressRole, AttackType

# Roles that mark the address itself as acting against a protocol.
HOSTILE_ROLES = frozenset(
    {AddressRole.ATTACKER, AddressRole.ATTACK_CONTRACT, AddressRole.FRONTRUNNER}
)


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


class AddressScreenQuery(QueryModel):
    wallet_address: Address = Field(
        max_length=64, description="EVM address (0x + 40 hex digits) or Solana address (base58)."
    )
    chain: Chain = None


class AddressMatch(FrozenModel):
    incident_id: str
    protocol: str
    date: dt.date
    role: AddressRole
    chain: str | None
    label: str | None


class AddressScreen(FrozenModel):
    address: str
    chain: str | None
    flagged: bool = Field(
        description="The address itself is listed as an attacker, attack contract or front-runner."
    )
    matches: list[AddressMatch]
    summary: str
    limitations: str


async def screen_address(
    session: AsyncSession, query: AddressScreenQuery, scope: Scope = OPEN
) -> AddressScreen:
    """Every incident that lists ``query.wallet_address``, and in which role."""
    address = query.wallet_address
    stmt = (
        select(
            IncidentRow.id,
            IncidentRow.protocol,
            IncidentRow.date,
            IncidentAddress.role,
            IncidentAddress.chain,
            IncidentAddress.label,
        )
        .join(IncidentAddress, IncidentAddress.incident_pk == IncidentRow.pk)
        .where(IncidentAddress.address == address)
        .order_by(IncidentRow.date.desc(), IncidentRow.pk.desc(), IncidentAddress.pk)
    )
    if query.chain:
        # Addresses with no recorded chain stay in: the same address exists on every EVM chain.
        stmt = stmt.where((IncidentAddress.chain == query.chain) | IncidentAddress.chain.is_(None))
    if scope.hide_after:
        stmt = stmt.where(IncidentRow.date <= scope.hide_after)
    matches = [
        AddressMatch(
            incident_id=row.id,
            protocol=row.protocol,
            date=row.date,
            role=AddressRole(row.role),
            chain=row.chain,
            label=row.label,
        )
        for row in await session.execute(stmt)
    ]
    hostile = [m for m in matches if m.role in HOSTILE_ROLES]
    if hostile:
        summary = (
            f"{address} is listed as {hostile[0].role.value.replace('_', ' ')} in "
            f"{len({m.incident_id for m in hostile})} incident(s), the latest "
            f"{hostile[0].protocol} on {hostile[0].date.isoformat()}."
        )
    elif matches:
        summary = (
            f"{address} appears in {len(matches)} incident(s) as a victim or vulnerable "
            "contract, not as an attacker."
        )
    else:
        summary = f"{address} is not listed in any incident KAMIYO knows."
    return AddressScreen(
        address=address,
        chain=query.chain,
        flagged=bool(hostile),
        matches=matches,
        summary=summary,
        limitations="Checks whether the address itself is listed in incident data; it does not "
        "yet examine the address's transactions with exploited contracts.",
    )


class SourceFreshness(FrozenModel):
    reports: int = Field(description="Reports of this source in the store.")
    last_success: dt.datetime | None = Field(description="When a refresh last worked.")
    last_error: str | None = Field(description="The last refresh's error, if it failed.")
    newest_report: dt.date | None = Field(description="The latest incident date it reports.")


class DatasetInfo(FrozenModel):
    incidents: int
    newest_incident: dt.date | None
    datasets: dict[str, dt.datetime] = Field(description="Loaded datasets and when they loaded.")
    sources: dict[str, SourceFreshness] = Field(
        default_factory=dict,
        description="Each source that has reports or has been refreshed: how fresh it is.",
    )


async def dataset_info(session: AsyncSession) -> DatasetInfo:
    count, newest = (
        await session.execute(select(func.count(IncidentRow.pk), func.max(IncidentRow.date)))
    ).one()
    loaded = {d.name: d.loaded_at for d in await session.scalars(select(Dataset))}
    held = {
        source: (reports, newest_day)
        for source, reports, newest_day in await session.execute(
            select(
                SourceReportRow.source,
                func.count(SourceReportRow.pk),
                func.max(IncidentRow.date),
            )
            .join(IncidentRow, IncidentRow.pk == SourceReportRow.incident_pk)
            .group_by(SourceReportRow.source)
        )
    }
    states = {s.name: s for s in await session.scalars(select(SourceState))}
    sources = {
        name: SourceFreshness(
            reports=held.get(name, (0, None))[0],
            newest_report=held.get(name, (0, None))[1],
            last_success=states[name].last_success_at if name in states else None,
            last_error=states[name].last_error if name in states else None,
        )
        for name in sorted(held.keys() | states.keys())
    }
    return DatasetInfo(incidents=count, newest_incident=newest, datasets=loaded, sources=sources)

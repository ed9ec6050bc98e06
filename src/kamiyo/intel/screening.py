"""What the data says about an address: every incident that lists it, and in which role.

This answers ``check_wallet_interactions`` from incident data alone, and never infers safety
from silence.
"""

import datetime as dt

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.db.tables import IncidentAddress
from kamiyo.intel.models import (
    Address,
    Chain,
    FrozenModel,
    QueryModel,
)
from kamiyo.intel.scope import Scope
from kamiyo.intel.vocabulary import AddressRole

# Roles that mark the address itself as acting against a protocol.
HOSTILE_ROLES = frozenset(
    {AddressRole.ATTACKER, AddressRole.ATTACK_CONTRACT, AddressRole.FRONTRUNNER}
)


OPEN = Scope()


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

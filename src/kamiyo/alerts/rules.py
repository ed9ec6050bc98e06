"""What an alert rule watches for, and whether an incident change matches it.

Every filter given must hold (an empty list or None does not filter); a rule with no filter
at all hears of every incident. Protocol names are resolved to name keys when the rule is
made, so "Euler Finance", "euler" and "EulerFinance" watch the same protocol.
"""

from pydantic import BaseModel, ConfigDict, Field

from kamiyo.alerts.events import IncidentChange
from kamiyo.chains import normalize_address
from kamiyo.intel.attack_types import AttackType
from kamiyo.intel.models import Address, ChainName
from kamiyo.intel.names import name_key

MAX_FILTER_ITEMS = 100


class AlertFilters(BaseModel):
    """A rule's conditions; every one given must hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chains: list[ChainName] = Field(
        default_factory=list, max_length=MAX_FILTER_ITEMS, description="Any of these chains."
    )
    protocols: list[str] = Field(
        default_factory=list,
        max_length=MAX_FILTER_ITEMS,
        description="Any of these protocols (any spelling of the name).",
    )
    min_loss_usd: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Losses of at least this many USD."
    )
    attack_types: list[AttackType] = Field(
        default_factory=list, max_length=MAX_FILTER_ITEMS, description="Any of these types."
    )
    addresses: list[Address] = Field(
        default_factory=list,
        max_length=MAX_FILTER_ITEMS,
        description="Incidents that list any of these addresses, in any role.",
    )


def matches(filters: AlertFilters, change: IncidentChange) -> bool:
    incident = change.incident
    if filters.chains and not set(filters.chains) & set(incident.chains):
        return False
    if filters.protocols:
        keys = {name_key(name) for name in (incident.protocol, *incident.aliases)}
        if not {name_key(p) for p in filters.protocols} & keys:
            return False
    if filters.min_loss_usd is not None and (incident.loss_usd or 0) < filters.min_loss_usd:
        return False
    if filters.attack_types and incident.attack_type not in filters.attack_types:
        return False
    if filters.addresses:
        listed = set()
        for fact in incident.addresses:
            try:
                listed.add(normalize_address(fact.address))
            except ValueError:
                continue
        if not set(filters.addresses) & listed:
            return False
    return True

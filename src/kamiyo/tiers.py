"""The tier table: the one place that says what each subscription allows.

Values from DESIGN.md. Everything that limits or unlocks reads this table; nothing else holds a
tier's numbers.
"""

from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    FREE = "free"
    PERSONAL = "personal"
    TEAM = "team"
    ENTERPRISE = "enterprise"


FREE_TOOLS = frozenset(
    {"health_check", "search_exploits", "get_exploit", "get_exploit_stats", "get_usage",
     "get_pricing"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TierPolicy:
    price_usd_per_month: int
    requests_per_minute: int
    requests_per_day: int
    max_results: int
    # Incidents newer than this many hours are withheld (0: real time).
    data_delay_hours: int
    tools: frozenset[str]
    detailed_risk: bool
    alerts: bool
    # Active API keys an account may hold (None: unlimited).
    seats: int | None


TIERS: dict[Tier, TierPolicy] = {
    Tier.FREE: TierPolicy(
        price_usd_per_month=0,
        requests_per_minute=10,
        requests_per_day=100,
        max_results=10,
        data_delay_hours=24,
        tools=FREE_TOOLS,
        detailed_risk=False,
        alerts=False,
        seats=1,
    ),
    Tier.PERSONAL: TierPolicy(
        price_usd_per_month=19,
        requests_per_minute=30,
        requests_per_day=1_000,
        max_results=50,
        data_delay_hours=0,
        tools=FREE_TOOLS | {"assess_protocol_risk"},
        detailed_risk=False,
        alerts=False,
        seats=2,
    ),
    Tier.TEAM: TierPolicy(
        price_usd_per_month=99,
        requests_per_minute=100,
        requests_per_day=10_000,
        max_results=200,
        data_delay_hours=0,
        tools=FREE_TOOLS | {"assess_protocol_risk", "check_wallet_interactions"},
        detailed_risk=False,
        alerts=False,
        seats=5,
    ),
    Tier.ENTERPRISE: TierPolicy(
        price_usd_per_month=299,
        requests_per_minute=500,
        requests_per_day=100_000,
        max_results=1_000,
        data_delay_hours=0,
        tools=FREE_TOOLS | {"assess_protocol_risk", "check_wallet_interactions"},
        detailed_risk=True,
        alerts=True,
        seats=None,
    ),
}


def lowest_tier_with(tool: str) -> Tier | None:
    """The cheapest tier that unlocks ``tool`` (for upgrade hints)."""
    return next((tier for tier, policy in TIERS.items() if tool in policy.tools), None)

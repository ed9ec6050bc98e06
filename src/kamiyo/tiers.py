"""The tier table: the one place that says what each subscription allows.

Values from DESIGN.md. Everything that limits or unlocks reads this table; nothing else holds a
tier's numbers. Tiers are ordered: each unlocks what the ones below it do, and an operation
names the lowest tier that unlocks it (service/catalogue.py), so what a tier unlocks is read
from the catalogue, not written here again.
"""

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    FREE = "free"
    PERSONAL = "personal"
    TEAM = "team"
    ENTERPRISE = "enterprise"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def includes(self, other: "Tier") -> bool:
        """Whether this tier unlocks everything ``other`` does."""
        return self.rank >= other.rank


_ORDER = tuple(Tier)


@dataclass(frozen=True, slots=True)
class TierPolicy:
    price_usd_per_month: int
    requests_per_minute: int
    requests_per_day: int
    max_results: int
    # Incidents newer than this many hours are withheld (0: real time).
    data_delay_hours: int
    detailed_risk: bool
    # Alert rules an account may keep (0: none; the catalogue's alert tools need TEAM).
    alert_rules: int
    # Active API keys an account may hold (None: unlimited).
    seats: int | None

    def hide_after(self, now: dt.datetime) -> dt.date | None:
        """The newest incident date this tier may see at ``now`` (None: real time). Incident
        dates are whole days, so the day the delay ends in is withheld too."""
        if not self.data_delay_hours:
            return None
        cutoff = now - dt.timedelta(hours=self.data_delay_hours)
        return cutoff.date() - dt.timedelta(days=1)


TIERS: dict[Tier, TierPolicy] = {
    Tier.FREE: TierPolicy(
        price_usd_per_month=0,
        requests_per_minute=10,
        requests_per_day=100,
        max_results=10,
        data_delay_hours=24,
        detailed_risk=False,
        alert_rules=0,
        seats=1,
    ),
    Tier.PERSONAL: TierPolicy(
        price_usd_per_month=19,
        requests_per_minute=30,
        requests_per_day=1_000,
        max_results=50,
        data_delay_hours=0,
        detailed_risk=False,
        alert_rules=0,
        seats=2,
    ),
    Tier.TEAM: TierPolicy(
        price_usd_per_month=99,
        requests_per_minute=100,
        requests_per_day=10_000,
        max_results=200,
        data_delay_hours=0,
        detailed_risk=False,
        alert_rules=3,
        seats=5,
    ),
    Tier.ENTERPRISE: TierPolicy(
        price_usd_per_month=299,
        requests_per_minute=500,
        requests_per_day=100_000,
        max_results=1_000,
        data_delay_hours=0,
        detailed_risk=True,
        alert_rules=100,
        seats=None,
    ),
}


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Requests per minute and per day for callers who hold no tier (the limiter reads these
    two fields of a ``TierPolicy`` too)."""

    requests_per_minute: int
    requests_per_day: int


# Calls paid for one by one (x402), counted per payer (``payer:<address>``) once the payment is
# verified: what one wallet may buy of the server's capacity. The team tier's numbers; a payer
# who needs more is a subscriber. A call over it is refused and its payment released, not taken.
PAID_CALLS = CallLimits(requests_per_minute=100, requests_per_day=10_000)
# Payments offered from one client address (the call's peer), counted BEFORE verifying them:
# verifying costs RPC reads (an EIP-3009 simulation, a Solana transaction check), so a flood of
# invalid payments from one address is stopped here. Above PAID_CALLS' minute, so that a payer
# retrying a failed payment is never stopped by this limit before the payer's own.
PAYMENT_ATTEMPTS = CallLimits(requests_per_minute=120, requests_per_day=20_000)


def next_tier_above(tier: Tier, max_results: int) -> Tier | None:
    """The cheapest tier that returns more than ``max_results`` records a call (upgrade hints)."""
    return next(
        (t for t, p in TIERS.items() if t.rank > tier.rank and p.max_results > max_results), None
    )


def next_tier_for_alert_rules(tier: Tier, rules: int) -> Tier | None:
    """The cheapest tier above ``tier`` that keeps more than ``rules`` alert rules."""
    return next((t for t, p in TIERS.items() if t.rank > tier.rank and p.alert_rules > rules), None)

"""What to check about a protocol, per factor that raised its risk score (enterprise detail).

The per-attack-type checks (``vocabulary.ATTACK_CHECKS``) answer the root cause; these answer
the other factors. A factor is advised on only when it adds at least ``ADVISE_FROM`` points.
"""

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from pydantic import Field

from kamiyo.intel.models import FrozenModel
from kamiyo.intel.risk_model import Factor
from kamiyo.intel.risk_weights import FactorName

ADVISE_FROM = 3.0

FACTOR_CHECKS: Mapping[FactorName, tuple[str, ...]] = MappingProxyType(
    {
        FactorName.RECENCY: (
            "Confirm the fix of the latest incident is deployed, reviewed and covered by tests.",
            "Watch forks and integrations of the exploited code: copycat attacks follow "
            "within weeks.",
        ),
        FactorName.LOSS: (
            "Size your exposure to what the protocol has lost before: check reserves, "
            "insurance or a reimbursement record.",
        ),
        FactorName.REPEATS: (
            "Ask for a post-mortem of each incident and what changed in process (review, "
            "monitoring, key management) after the first.",
            "Prefer a re-audit of the whole system to reviews of single patches.",
        ),
        FactorName.INCIDENTS: (
            "Read each incident listed here in full (get_exploit) before relying on the protocol.",
        ),
        FactorName.AUDITS: (
            "Ask for an audit of the deployed contracts, and check the audited commit is the "
            "one deployed.",
        ),
        FactorName.AGE: (
            "Limit exposure while the protocol is young: its code has seen little real use.",
        ),
        FactorName.TVL: (
            "A large pool of funds draws skilled attackers: check for a bug bounty sized to "
            "the value at risk.",
        ),
        FactorName.RELATIVE_LOSS: (
            "Check how the protocol recovered from a loss this large against its size "
            "(recapitalisation, debt, a new deployment).",
        ),
        FactorName.CATEGORY: (
            "Check the category's usual failure points: validator and key security for "
            "bridges, liquidation and price logic for lending.",
        ),
        FactorName.ORACLES: (
            "Check every collateral price has a second, independent source and a staleness check.",
        ),
        FactorName.FORK_LINEAGE: (
            "Check the fix of each exploit of the parent protocol was applied to this fork.",
        ),
    }
)


class FactorCheck(FrozenModel):
    """What to verify about a protocol because one factor raised its score."""

    factor: FactorName
    contribution: float = Field(description="The points this factor added to the score.")
    checks: list[str]


def factor_checks(factors: Sequence[Factor]) -> list[FactorCheck]:
    """Checks for the factors adding at least ``ADVISE_FROM`` points, largest first (the root
    cause is answered per attack type instead)."""
    advised = [f for f in factors if f.contribution >= ADVISE_FROM and f.name in FACTOR_CHECKS]
    advised.sort(key=lambda f: (-f.contribution, f.name))
    return [
        FactorCheck(factor=f.name, contribution=f.contribution, checks=list(FACTOR_CHECKS[f.name]))
        for f in advised
    ]

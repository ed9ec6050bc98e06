"""The risk model's tables: its factors, their weights with the reasoning, and severities.

One table of weights (:data:`WEIGHTS`): each factor's points at full strength and why. One of
root-cause severity (:data:`SEVERITY`), one of registry-category exposure. ``risk_model``
computes with them; ``docs/risk.md`` shows them (a test checks the weights there are these).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from kamiyo.intel.vocabulary import AttackType


class FactorName(StrEnum):
    INCIDENTS = "incidents"
    RECENCY = "recency"
    REPEATS = "repeats"
    LOSS = "loss"
    ROOT_CAUSE = "root_cause"
    FUNDS_RETURNED = "funds_returned"
    AUDITS = "audits"
    AGE = "age"
    TVL = "tvl"
    RELATIVE_LOSS = "relative_loss"
    CATEGORY = "category"
    ORACLES = "oracles"
    FORK_LINEAGE = "fork_lineage"


@dataclass(frozen=True, slots=True)
class Weight:
    points: float
    why: str


# THE TABLE OF WEIGHTS. Incident factors sum to 100 at their maximum; registry factors adjust.
WEIGHTS: Mapping[FactorName, Weight] = MappingProxyType(
    {
        FactorName.RECENCY: Weight(
            30,
            "Repeat incidents cluster in time (4 of 6 repeat victims in one public study were "
            "hit again within twelve months): fixes are fresh and copycats try the same bug.",
        ),
        FactorName.LOSS: Weight(
            25,
            "Large losses mark large, still-attractive targets (attack likelihood rises with "
            "size); on a log scale, $10K scores 0 and $1B scores 1.",
        ),
        FactorName.ROOT_CAUSE: Weight(
            20,
            "Some root causes say more about the whole system than one bug does: a stolen key "
            "or a missing access check points at operations that can fail again.",
        ),
        FactorName.REPEATS: Weight(
            15,
            "A protocol attacked again after a first incident (a month or more apart) has "
            "shown that the first fix did not close its weaknesses.",
        ),
        FactorName.INCIDENTS: Weight(
            10,
            "More incidents on record, more evidence; little weight, as almost every protocol "
            "with a record has exactly one.",
        ),
        FactorName.FUNDS_RETURNED: Weight(
            -5,
            "Returned funds cut the damage users bore; they do not undo the flaw, so they take "
            "off little.",
        ),
        FactorName.FORK_LINEAGE: Weight(
            10,
            "Forks inherit their parent's code and its bugs: Compound forks alone account for "
            "several exploits of one reentrancy pattern.",
        ),
        FactorName.TVL: Weight(
            10,
            "Attack likelihood rises with the value locked (about +10 % per tenfold TVL in one "
            "study); $1M scores 0 and $10B scores 1.",
        ),
        FactorName.RELATIVE_LOSS: Weight(
            5,
            "A loss that was large against today's value locked was existential; one that was "
            "small was absorbed.",
        ),
        FactorName.AUDITS: Weight(
            5,
            "An audit at launch is only weakly associated with fewer breaches in published "
            "studies: little weight, and only for no audit at all.",
        ),
        FactorName.AGE: Weight(
            5,
            "Young protocols have had less time to be tested in production; the factor fades "
            "over two years.",
        ),
        FactorName.CATEGORY: Weight(
            5,
            "Bridges and lending markets hold pooled funds behind complex cross-contract logic "
            "and have lost the most.",
        ),
        FactorName.ORACLES: Weight(
            5,
            "A protocol that prices collateral from one oracle, or none listed, depends on one "
            "feed that can be moved.",
        ),
    }
)

# How much each root cause says about the protocol as a whole, 0-1 (the root_cause factor takes
# the highest among its incidents). Operational failures rate highest: they recur whatever the
# code; design flaws next; narrow code bugs and events outside the protocol lowest.
SEVERITY: Mapping[AttackType, float] = MappingProxyType(
    {
        AttackType.KEY_COMPROMISE: 1.0,
        AttackType.ACCESS_CONTROL: 0.9,
        AttackType.BRIDGE: 0.9,
        AttackType.GOVERNANCE: 0.8,
        AttackType.ORACLE_MANIPULATION: 0.8,
        AttackType.PRICE_MANIPULATION: 0.7,
        AttackType.MISCONFIGURATION: 0.7,
        AttackType.SUPPLY_CHAIN: 0.7,
        AttackType.BUSINESS_LOGIC: 0.6,
        AttackType.FLASH_LOAN: 0.6,
        AttackType.REENTRANCY: 0.6,
        AttackType.ARBITRARY_CALL: 0.6,
        AttackType.SIGNATURE: 0.6,
        AttackType.STORAGE_COLLISION: 0.6,
        AttackType.INPUT_VALIDATION: 0.5,
        AttackType.INFLATION_ATTACK: 0.5,
        AttackType.PRECISION_LOSS: 0.5,
        AttackType.INTEGER_OVERFLOW: 0.5,
        AttackType.TOKEN_MECHANICS: 0.4,
        AttackType.BAD_RANDOMNESS: 0.4,
        AttackType.COMPILER_BUG: 0.4,
        AttackType.SLIPPAGE_MEV: 0.3,
        AttackType.PHISHING: 0.3,
        # A rug pull is the team itself: critical for users, yet the protocol rarely lives on.
        AttackType.RUG_PULL: 0.5,
        AttackType.OTHER: 0.4,
        AttackType.UNKNOWN: 0.4,
    }
)

# Registry categories by exposure (DeFiLlama's names, lower case); others score 0.3.
CATEGORY_EXPOSURE: Mapping[str, float] = MappingProxyType(
    {
        "bridge": 1.0,
        "cross chain": 1.0,
        "chain": 0.8,
        "lending": 0.8,
        "cdp": 0.8,
        "derivatives": 0.7,
        "algo-stables": 0.7,
        "yield aggregator": 0.6,
        "leveraged farming": 0.6,
        "dexes": 0.5,
        "yield": 0.5,
        "liquid staking": 0.4,
    }
)
# Categories that price collateral, so their oracles matter.
PRICED_CATEGORIES = frozenset({"lending", "cdp", "derivatives", "algo-stables", "options"})

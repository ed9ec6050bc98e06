"""The uncached benchmark's mix: varied, realistic ``search_exploits`` arguments from the
bundled data, so no two consecutive calls on a connection ask the same thing.

An agent's calls vary (a protocol it is about to use, a chain and a period, an attack it read
about, an address it was given), so the mix draws protocol names, addresses, chains and dates
from the bundled incidents and combines them with filters, attack words and sort orders the way
``bench/search.py``'s query shapes do. Deterministic: the same list on every run.
"""

import random
from typing import Any

from kamiyo.intel.bundled import read_bundle
from kamiyo.intel.models import SearchQuery
from kamiyo.intel.vocabulary import AttackType

ATTACK_WORDS = [
    "flash loan",
    "reentrancy",
    "private key",
    "oracle manipulation",
    "price manipulation",
    "access control",
    "rug pull",
    "phishing",
    "bridge exploit",
    "governance attack",
    "integer overflow",
    "signature replay",
]
BROAD_WORDS = ["exploit", "drained", "hack", "vault", "lending", "swap"]
CHAINS = ["ethereum", "bsc", "arbitrum", "base", "polygon", "optimism", "avalanche", "solana"]
ATTACK_TYPES = [
    AttackType.FLASH_LOAN,
    AttackType.REENTRANCY,
    AttackType.KEY_COMPROMISE,
    AttackType.PRICE_MANIPULATION,
    AttackType.ACCESS_CONTROL,
    AttackType.BUSINESS_LOGIC,
]
SINCES = ["2020-01-01", "2021-06-01", "2022-01-01", "2023-01-01", "2024-01-01"]
MIN_LOSSES = [10_000, 100_000, 1_000_000, 10_000_000]
LIMITS = [5, 10, 10, 20]


def search_mix(seed: int = 17) -> list[dict[str, Any]]:
    """At least 50 different argument sets for ``search_exploits``, each one valid."""
    rng = random.Random(seed)
    _, sources = read_bundle()
    reports = [report for found in sources.values() for report in found]
    protocols = sorted({r.protocol for r in reports if r.protocol})
    addresses = sorted({a.address for r in reports for a in r.addresses})
    mix: list[dict[str, Any]] = []
    for name in rng.sample(protocols, 18):  # a name alone: the commonest call
        mix.append({"query": name, "limit": rng.choice(LIMITS)})
    for name in rng.sample(protocols, 10):  # a name with the typical filters
        mix.append(
            {
                "query": name,
                "chain": rng.choice(CHAINS[:4]),
                "since": rng.choice(SINCES[:3]),
                "min_loss_usd": rng.choice(MIN_LOSSES[:2]),
            }
        )
    for words in ATTACK_WORDS:  # attack words, half of them filtered
        arguments: dict[str, Any] = {"query": words, "limit": rng.choice(LIMITS)}
        if rng.random() < 0.5:
            arguments |= {"chain": rng.choice(CHAINS), "since": rng.choice(SINCES)}
        mix.append(arguments)
    for chain in CHAINS:  # filters only, newest first or by loss
        mix.append(
            {
                "chain": chain,
                "since": rng.choice(SINCES),
                "sort": rng.choice(["recent", "loss"]),
                "limit": rng.choice(LIMITS),
            }
        )
    for attack_type in ATTACK_TYPES:
        mix.append({"attack_type": attack_type.value, "since": rng.choice(SINCES)})
    for address in rng.sample(addresses, 6):
        mix.append({"address": address})
    for words in BROAD_WORDS:
        mix.append({"query": words, "sort": "relevance", "limit": 20})
    for arguments in mix:
        SearchQuery.model_validate(arguments)  # a typo here would bench error answers
    return mix

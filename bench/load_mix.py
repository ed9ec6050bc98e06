"""The load benchmark's mix of calls: varied searches, several accounts and tiers, refusals.

Each call is a JSON-RPC ``tools/call`` body with the headers of the account making it, a kind
(what the report counts it as) and a weight (its share of the load). What the servers should
meter for each outcome the client sees is ``METERED_AS``.
"""

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOLS = [
    "euler", "ronin", "wormhole", "nomad", "poly network", "beanstalk", "cream", "badger",
    "harmony", "mango", "curve", "multichain", "bzx", "compound", "yearn", "rari", "qubit",
    "ankr", "kyber", "platypus", "inverse", "saddle", "fei", "uranium", "bancor",
]  # fmt: skip
ATTACKS = [
    "flash loan", "reentrancy", "oracle manipulation", "private key", "bridge", "governance",
    "price manipulation", "rug pull", "access control", "signature",
]  # fmt: skip
CHAINS = ["ethereum", "bsc", "arbitrum", "polygon", "solana"]
SINCE = ["2020-01-01", "2021-06-01", "2022-01-01", "2023-01-01"]
ADDRESSES = [
    "0x098b716b8aaf21512996dc57eb0615e2383e2f96",  # the Ronin exploiter
    "0xb66cd966670d962c227b3eaba30a872dbfb995db",  # the Euler exploiter
    "0x629e7da20197a5429d30da36e77d06cdf796b71a",  # the Wintermute exploiter
]
# How the client sees an outcome -> the status of its usage record.
METERED_AS = {
    "ok": "ok",
    "invalid_arguments": "invalid",
    "rate_limited": "rate_limited",
    "forbidden": "forbidden",
}


@dataclass(frozen=True)
class Accounts:
    """API keys by role: the load's enterprise keys (limits raised), a team and a personal key
    (real limits), and a free key whose 10 calls a minute the load soon passes."""

    enterprise: list[str]
    team: str
    personal: str
    free: str


@dataclass
class Call:
    kind: str
    weight: float
    tool: str
    arguments: dict[str, Any]
    key: str
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def plan(self, n: int) -> dict[str, Any]:
        params = {"name": self.tool, "arguments": self.arguments}
        body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params}
        return {
            "kind": self.kind,
            "weight": self.weight,
            "headers": self.headers,
            "body": json.dumps(body),
        }


def search_queries() -> list[dict[str, Any]]:
    """At least 50 different search_exploits arguments, as an agent's would vary."""
    queries: list[dict[str, Any]] = [{"query": name, "limit": 10} for name in PROTOCOLS]
    for attack, chain, since in zip(
        ATTACKS, itertools.cycle(CHAINS), itertools.cycle(SINCE), strict=False
    ):
        queries.append({"query": attack, "chain": chain, "since": since, "limit": 10})
        queries.append({"query": attack, "min_loss_usd": 1_000_000, "sort": "loss"})
    for chain, since in itertools.product(CHAINS, SINCE[:2]):
        queries.append({"chain": chain, "since": since, "sort": "date", "limit": 20})
    queries += [{"address": address} for address in ADDRESSES]
    return queries


def mix(accounts: Accounts, exploit_ids: list[str]) -> list[Call]:
    """The calls and their weights (shares of the load, summing to 100)."""
    calls: list[Call] = []
    queries = search_queries()
    keys = itertools.cycle(accounts.enterprise)
    calls += [Call("search", 60 / len(queries), "search_exploits", q, next(keys)) for q in queries]
    calls += [
        Call("get_exploit", 10 / len(exploit_ids), "get_exploit", {"exploit_id": i}, next(keys))
        for i in exploit_ids
    ]
    groups = ["chain", "year", "month", "attack_type"]
    calls += [
        Call("stats", 5 / len(groups), "get_exploit_stats", {"group_by": g}, next(keys))
        for g in groups
    ]
    calls += [
        Call("risk", 5 / 5, "assess_protocol_risk", {"protocol_name": name}, next(keys))
        for name in PROTOCOLS[:5]
    ]
    calls.append(Call("health", 2, "health_check", {}, next(keys)))
    # Real limits: the team key (100 a minute) and the personal key (30) pass theirs at the
    # higher rates; the free key (10) at once.
    calls.append(Call("team", 5, "search_exploits", {"query": "euler"}, accounts.team))
    calls.append(Call("personal", 3, "search_exploits", {"query": "nomad"}, accounts.personal))
    calls.append(Call("free", 5, "search_exploits", {"query": "ronin"}, accounts.free))
    # Bad arguments: refused before running, never charged.
    bad: list[dict[str, Any]] = [{"limit": 0}, {"since": "yesterday"}, {"sort": "random"}]
    calls += [Call("bad_argument", 5 / 3, "search_exploits", b, next(keys)) for b in bad]
    return calls

"""What counting a call costs: ``kamiyo.metrics.count_call`` (the meter's hook, on every call
of every surface) and one scrape of ``/metrics``'s exposition, beside the library's bare
``labels().inc()`` in the same run.

    python -m bench.metrics_cost [--calls 20000] [--rounds 7]

Prints a table of medians over the rounds (per-call microseconds) and writes it to
``bench/results/metrics-cost-<timestamp>.txt``.
"""

import argparse
import statistics
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from kamiyo import metrics
from kamiyo.service.catalogue import OPERATIONS

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    tools = [op.name.value for op in OPERATIONS]
    metrics.declare_series(tools, ["rekt", "slowmist"])
    statuses = ["ok", "ok", "ok", "invalid", "rate_limited", "forbidden"]
    # Every series a busy instance holds: each tool by a few tiers and statuses.
    for tool in tools:
        for tier in ("free", "personal", "team"):
            for status in statuses:
                metrics.count_call(tool, tier, status, 0.004, admitted=status == "ok")
    counter = metrics.TOOL_CALLS
    cases: dict[str, Callable[[], object]] = {
        "labels().inc() (library, bare)": lambda: counter.labels("get_usage", "free", "ok").inc(),
        "count_call (hook: counter, histogram)": lambda: metrics.count_call(
            "search_exploits", "team", "ok", 0.004, admitted=True
        ),
        "count_call, a refusal": lambda: metrics.count_call(
            "search_exploits", "free", "rate_limited", 0.0002, admitted=False
        ),
    }
    rows = []
    for name, case in cases.items():
        rounds = [timeit.timeit(case, number=args.calls) / args.calls for _ in range(args.rounds)]
        rows.append((name, statistics.median(rounds) * 1e6))
    scrapes = [timeit.timeit(lambda: generate_latest(REGISTRY), number=20) / 20 for _ in range(5)]
    rows.append(("generate_latest (one scrape)", statistics.median(scrapes) * 1e6))
    series = sum(len(family.samples) for family in REGISTRY.collect())
    lines = [
        f"metrics cost, {args.calls} calls x {args.rounds} rounds (medians); {series} samples "
        "exported",
        f"{'case':<42} {'us per call':>12}",
        *(f"{name:<42} {us:>12.2f}" for name, us in rows),
    ]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"metrics-cost-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt"
    out.write_text(report + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

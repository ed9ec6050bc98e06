"""Ingest speed with entity resolution: synthetic reports from three sources, about 30 % of
them describing an incident another source reports too, on SQLite and PostgreSQL.

    python -m bench.ingest                        # 100,000 reports, both backends
    python -m bench.ingest --reports 20000 --backends sqlite

The reports go through the same ``Store.ingest`` a live run uses (resolution, canonical
fields, child rows, full-text documents), in the order a refresh would meet them (source by
source). Reported: reports per second, peak RSS of this process and how much of it the
resolution index takes, and how well the synthetic duplicates were found (the generator knows
which reports describe one incident). Results are printed and written to
``bench/results/ingest-<timestamp>.json``.
"""

import argparse
import asyncio
import datetime as dt
import json
import random
import resource
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from tempfile import TemporaryDirectory

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench.search import postgres_database
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.tables import SourceReportRow
from kamiyo.intel.models import AddressFact, TransactionFact
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Store
from kamiyo.intel.vocabulary import AddressRole

console = Console(stderr=True)
# Tracing allocations measures the resolution index, at the cost of a slower run.
TRACE = False
RESULTS = Path(__file__).parent / "results"
SOURCES = ("alpha", "beta", "gamma")
SHARE = (0.45, 0.35, 0.20)  # of the reports, per source
# 20 syllables, 2 to 4 per name: about as many distinct names as a real feed has per incident.
SYLLABLES: tuple[str, ...] = ("ka", "mi", "yo", "ze", "ra", "lu", "no", "vi", "ta", "be")
SYLLABLES += ("so", "ri", "ko", "ma", "pe", "du", "xa", "qi", "fo", "ne")
SUFFIXES = ("", " Finance", " Protocol", " Swap", "DAO", " Bridge", " Labs")
CHAINS = ("ethereum", "bsc", "arbitrum", "base", "polygon", "solana", "optimism", "avalanche")


def _spelling(rng: random.Random, name: str) -> str:
    """Another way a source might write the same name."""
    choice = rng.random()
    if choice < 0.3:
        return name.upper()
    if choice < 0.6:
        return name + rng.choice((" Finance", " Protocol", " V2"))
    if choice < 0.8:
        return name.replace(" ", "")
    return name


def generate(
    count: int, seed: int
) -> tuple[dict[str, list[SourceReport]], dict[tuple[str, str], int]]:
    """Reports per source, and which synthetic incident each describes."""
    rng = random.Random(seed)
    # About 30 % of reports describe an incident shared with another source: with two reports
    # per shared incident, distinct incidents are about 85 % of the report count.
    incidents = int(count * 0.85)
    shared = count - incidents  # incidents reported twice
    start = dt.date(2016, 1, 1).toordinal()
    span = dt.date(2026, 11, 1).toordinal() - start
    names = sorted(
        {
            "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
            + rng.choice(SUFFIXES)
            for _ in range(incidents // 3)
        }
    )
    by_source: dict[str, list[SourceReport]] = {s: [] for s in SOURCES}
    truth: dict[tuple[str, str], int] = {}
    for n in range(incidents):
        day = dt.date.fromordinal(start + int(span * rng.random() ** 0.6))
        protocol = rng.choice(names)
        loss = round(rng.lognormvariate(13, 2), 2)
        chain = rng.choice(CHAINS)
        tx = f"0x{rng.getrandbits(256):064x}" if rng.random() < 0.6 else None
        attacker = f"0x{rng.getrandbits(160):040x}"
        copies = 2 if n < shared else 1
        sources = rng.choices(SOURCES, SHARE, k=1)
        if copies == 2:
            sources = rng.sample(SOURCES, 2)
        for copy, source in enumerate(sources):
            source_id = f"{source}-{n}"
            shift = rng.randint(-4, 4) if copy else 0
            has_tx = tx is not None and (copy == 0 or rng.random() < 0.5)
            by_source[source].append(
                SourceReport(
                    source=source,
                    source_id=source_id,
                    date=day + dt.timedelta(days=shift),
                    protocol=_spelling(rng, protocol) if copy else protocol,
                    chains=[chain],
                    loss_usd=round(loss * rng.uniform(0.8, 1.25), 2) if copy else loss,
                    loss_usd_basis="usd",
                    loss_text=f"${loss:,.0f}",
                    attack_type_raw=rng.choice(("reentrancy", "oracle manipulation", "")),
                    addresses=[
                        AddressFact(role=AddressRole.ATTACKER, chain=chain, address=attacker)
                    ]
                    if rng.random() < 0.5
                    else [],
                    transactions=[TransactionFact(chain=chain, hash=tx)] if has_tx and tx else [],
                )
            )
            truth[(source, source_id)] = n
    return by_source, truth


async def bench_backend(url: str, count: int, seed: int) -> dict[str, object]:
    by_source, truth = generate(count, seed)
    engine = create_engine(url)
    sessions = session_factory(engine)
    await migrate.upgrade(engine)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result: dict[str, object] = {"reports": sum(len(r) for r in by_source.values())}
    try:
        async with sessions() as session:
            if TRACE:
                tracemalloc.start()
            store = await Store.load(session)
            started = time.perf_counter()
            for name in SOURCES:
                chunk_start = time.perf_counter()
                counts = await store.ingest(session, by_source[name], origin="import")
                await session.commit()
                console.print(
                    f"  {name}: {len(by_source[name]):,} reports in "
                    f"{time.perf_counter() - chunk_start:.1f} s ({counts})"
                )
            elapsed = time.perf_counter() - started
            index_bytes = tracemalloc.get_traced_memory()[1] if TRACE else 0
            tracemalloc.stop()
            rows = (
                await session.execute(
                    select(
                        SourceReportRow.source,
                        SourceReportRow.source_id,
                        SourceReportRow.incident_pk,
                    )
                )
            ).all()
        result["seconds"] = round(elapsed, 1)
        result["reports_per_second"] = round(result["reports"] / elapsed)  # type: ignore[operator]
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        result["rss_growth_mb"] = round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        )
        result["traced_peak_mb"] = round(index_bytes / 2**20)
        result["index_entries"] = len(store.index.entries)
        result.update(score(rows, truth))
    finally:
        await engine.dispose()
    return result


def score(
    rows: Iterable[tuple[str, str, int]], truth: dict[tuple[str, str], int]
) -> dict[str, float]:
    """Pairwise precision and recall of the merges against the generator's truth."""
    by_incident: dict[int, list[int]] = {}
    by_truth: dict[int, list[int]] = {}
    for source, source_id, pk in rows:
        by_incident.setdefault(pk, []).append(truth[(source, source_id)])
        by_truth.setdefault(truth[(source, source_id)], []).append(pk)

    def pairs(groups: dict[int, list[int]]) -> int:
        return sum(len(g) * (len(g) - 1) // 2 for g in groups.values())

    found = pairs(by_incident)
    true_pairs = pairs(by_truth)
    correct = sum(
        1
        for members in by_incident.values()
        for i, a in enumerate(members)
        for b in members[i + 1 :]
        if a == b
    )
    return {
        "precision": round(correct / found, 3) if found else 1.0,
        "recall": round(correct / true_pairs, 3) if true_pairs else 1.0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--trace-memory", action="store_true", help="Measure allocations (slower run)."
    )
    args = parser.parse_args()
    global TRACE
    TRACE = args.trace_memory
    results = []
    for backend in args.backends.split(","):
        console.print(f"[bold]{backend}[/bold]: {args.reports:,} reports")
        if backend == "sqlite":
            with TemporaryDirectory() as folder:
                url = f"sqlite+aiosqlite:///{folder}/bench.db"
                results.append(
                    {"backend": backend, **await bench_backend(url, args.reports, args.seed)}
                )
        else:
            url, drop = await postgres_database(None)
            try:
                results.append(
                    {"backend": backend, **await bench_backend(url, args.reports, args.seed)}
                )
            finally:
                if drop:
                    await drop()
    table = Table(title="Ingest with entity resolution")
    columns = (
        "backend",
        "reports",
        "seconds",
        "reports_per_second",
        "peak_rss_mb",
        "traced_peak_mb",
        "index_entries",
        "precision",
        "recall",
    )
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in results:
        table.add_row(*(f"{row.get(c)}" for c in columns))
    Console(width=160).print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ingest-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())

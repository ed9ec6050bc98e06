"""Search latency on the bundled data and on synthetic incidents, for SQLite and PostgreSQL.

    python -m bench.search                      # bundled data + 1,000,000 synthetic, both backends
    python -m bench.search --rows 100000 --backends sqlite --rounds 5

Each query shape runs ``--calls`` times per round with varied arguments, through the same
``intel.search_incidents`` the surfaces call (SQL, full-text match and result hydration);
the report gives the median over rounds of each round's p50 and p99. Results are printed and
written to ``bench/results/search-<timestamp>.json``. PostgreSQL comes from
``KAMIYO_BENCH_POSTGRES_URL`` (default: the local server); the bench creates its own databases
and drops them afterwards.
"""

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from bench.search_report import print_report
from bench.synthetic import Corpus, synthetic_records
from kamiyo import intel
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.tables import Incident, IncidentAddress
from kamiyo.intel.bulk import bulk_load
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.text import query_terms
from kamiyo.runtime import open_runtime

RESULTS = Path(__file__).parent / "results"
POSTGRES_ADMIN_URL = os.environ.get(
    "KAMIYO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
console = Console(stderr=True)


def shapes(corpus: Corpus, rng: random.Random) -> dict[str, Callable[[], intel.SearchQuery]]:
    def q(**fields: object) -> Callable[[], intel.SearchQuery]:
        return lambda: intel.SearchQuery.model_validate(
            {k: (v() if callable(v) else v) for k, v in fields.items()}
        )

    return {
        "protocol name": q(query=lambda: rng.choice(corpus.protocol_words)),
        "protocol + filters (typical)": q(
            query=lambda: rng.choice(corpus.protocol_words),
            chain=lambda: rng.choice(["bsc", "ethereum"]),
            since=lambda: f"{rng.randint(2018, 2024)}-01-01",
            min_loss_usd=lambda: rng.choice([1e4, 1e5, 1e6]),
        ),
        "attack words + filters": q(
            query=lambda: rng.choice(["flash loan", "reentrancy", "oracle", "access control"]),
            chain=lambda: rng.choice(["bsc", "ethereum"]),
            since=lambda: f"{rng.randint(2019, 2025)}-01-01",
            min_loss_usd=1_000_000,
        ),
        "filters, newest first": q(
            chain=lambda: rng.choice(["ethereum", "bsc", "arbitrum"]),
            since=lambda: f"{rng.randint(2018, 2025)}-01-01",
            min_loss_usd=lambda: rng.choice([1e5, 1e6, 1e7]),
        ),
        "chain, largest loss first": q(
            chain=lambda: rng.choice(["arbitrum", "base", "polygon"]), sort="loss"
        ),
        "attack type + since": q(
            attack_type=lambda: rng.choice(["reentrancy", "access_control", "price_manipulation"]),
            since=lambda: f"{rng.randint(2020, 2025)}-06-01",
        ),
        "address": q(address=lambda: rng.choice(corpus.addresses)),
        "broad words, by relevance": q(
            query=lambda: rng.choice(["price manipulation", "logic flaw", "business logic"])
        ),
        # Words naming no attack type: only the text stage answers, ranking every match.
        "broad words, no attack type": q(
            query=lambda: rng.choice(["price", "manipulation", "contract"])
        ),
    }


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct))]


async def measure(call: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float]:
    for _ in range(min(20, calls)):
        await call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 0.5), percentile(samples, 0.99)


async def run_shapes(
    session: AsyncSession, corpus: Corpus, calls: int, rounds: int, seed: int
) -> dict[str, dict[str, float]]:
    report: dict[str, dict[str, float]] = {}
    rng = random.Random(seed)
    named = shapes(corpus, rng)

    def searcher(make: Callable[[], intel.SearchQuery]) -> Callable[[], Awaitable[object]]:
        return lambda: intel.search_incidents(session, make())

    named_calls = {name: searcher(make) for name, make in named.items()}
    named_calls["get by id"] = lambda: intel.get_incident(session, rng.choice(corpus.ids))
    for name, call in named_calls.items():
        p50s, p99s = [], []
        for _ in range(rounds):
            p50, p99 = await measure(call, calls)
            p50s.append(p50)
            p99s.append(p99)
        report[name] = {"p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s)}
    stats_calls = {
        "stats by year": lambda: intel.incident_stats(
            session, intel.StatsQuery(group_by=intel.StatsGroup.YEAR)
        ),
        "stats by chain, since": lambda: intel.incident_stats(
            session,
            intel.StatsQuery(
                group_by=intel.StatsGroup.CHAIN, since=f"{rng.randint(2018, 2025)}-03-15"
            ),
        ),
    }
    for name, call in stats_calls.items():  # fewer calls: before 0018 each read every incident
        p50, p99 = await measure(call, max(calls // 10, 5))
        report[name] = {"p50_ms": p50, "p99_ms": p99}
    return report


async def database_size(session: AsyncSession, url: str) -> int:
    if url.startswith("postgresql"):
        return int(await session.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    path = Path(make_url(url).database or "")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def bench_backend(
    backend: str, url: str, rows: int, calls: int, rounds: int, seed: int
) -> dict[str, object]:
    result: dict[str, object] = {"backend": backend}
    # 1. The bundled dataset, as a user gets it.
    started = time.perf_counter()
    async with open_runtime(
        Settings(database=DatabaseSettings(url=url), _env_file=None), upgrade=True
    ) as runtime:
        result["bundled_load_s"] = round(time.perf_counter() - started, 3)
        async with runtime.sessions() as session:
            incidents = (await session.execute(select(Incident.id, Incident.protocol))).all()
            addresses = list(await session.scalars(select(IncidentAddress.address)))
        corpus = Corpus(
            protocol_words=[p for _, p in incidents if query_terms(p)],
            addresses=addresses,
            ids=[i for i, _ in incidents],
        )
        result["bundled_rows"] = len(incidents)
        async with runtime.sessions() as session:
            result["bundled"] = await run_shapes(session, corpus, calls, rounds, seed)
    if rows <= 0:
        return result
    # 2. Synthetic incidents on top, written by the bulk loader (the rows ingest writes).
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        await migrate.upgrade(engine)
        generated, corpus = synthetic_records(rows, seed)
        async with sessions() as session:
            loaded = await session.scalar(
                text("SELECT count(*) FROM source_reports WHERE source = 'synthetic'")
            )
        if loaded == rows:  # a kept database from an earlier run: regenerate the corpus only
            for _ in generated:
                pass
            generated = iter(())
        started = time.perf_counter()
        cpu_started = time.process_time()
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"{backend}: loading {rows:,} incidents", total=rows)

            def counted(records: Iterator[SourceReport]) -> Iterator[SourceReport]:
                for n, record in enumerate(records, 1):
                    if n % 10_000 == 0:
                        progress.advance(task, 10_000)
                    yield record

            async with sessions() as session:
                await bulk_load(session, counted(generated), origin="import")
                await session.commit()
        result["synthetic_load_cpu_s"] = round(time.process_time() - cpu_started, 1)
        result["synthetic_rows"] = rows
        result["synthetic_load_s"] = round(time.perf_counter() - started, 1)
        async with sessions() as session:
            if backend == "postgresql":
                # VACUUM too: the bulk load wrote each incident, then its search vector.
                async with engine.connect() as conn:
                    auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await auto.execute(text("VACUUM ANALYZE"))
            else:
                await session.execute(text("ANALYZE"))
                await session.execute(
                    text("INSERT INTO incident_search(incident_search) VALUES ('optimize')")
                )
                await session.commit()
            result["database_bytes"] = await database_size(session, url)
            result["synthetic"] = await run_shapes(session, corpus, calls, rounds, seed)
    finally:
        await engine.dispose()
    return result


async def postgres_database(keep: str | None) -> tuple[str, Callable[[], Awaitable[None]] | None]:
    name = keep or f"kamiyo_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    if not exists:
        await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False), None if keep else drop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic incidents (0: none)")
    parser.add_argument("--calls", type=int, default=200, help="calls per shape per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-sqlite", metavar="PATH", help="keep (and reuse) this SQLite file")
    parser.add_argument("--keep-postgres", metavar="DB", help="keep (and reuse) this database")
    args = parser.parse_args()

    results = []
    with TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            drop: Callable[[], Awaitable[None]] | None = None
            if backend == "postgresql":
                url, drop = await postgres_database(args.keep_postgres)
            else:
                url = f"sqlite+aiosqlite:///{args.keep_sqlite or Path(folder) / 'bench.db'}"
            try:
                results.append(
                    await bench_backend(backend, url, args.rows, args.calls, args.rounds, args.seed)
                )
            finally:
                if drop:
                    await drop()
    print_report(console, results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"search-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    console.print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())

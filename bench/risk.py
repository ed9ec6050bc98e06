"""``assess_protocol_risk`` latency on the bundled data, for SQLite and PostgreSQL.

    python -m bench.risk                          # both backends, 2,000 calls per round, 5 rounds
    python -m bench.risk --backends sqlite --calls 500

Each call runs ``intel.assess_protocol`` as the tool does (resolution, related names, the
model, the answer), detailed, over a mix of names: resolved ones with one or several incidents,
ones with related incidents, a typo, a partial name and an unknown one. The report gives the
median over rounds of each round's p50 and p99, in milliseconds. PostgreSQL comes from
``KAMIYO_BENCH_POSTGRES_URL`` (default: the local server); the bench creates its own database
and drops it afterwards.
"""

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import asyncpg
from sqlalchemy.engine import make_url

from kamiyo import intel
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.intel.scope import Scope
from kamiyo.runtime import open_runtime

POSTGRES_ADMIN_URL = os.environ.get(
    "KAMIYO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
NAMES = [
    "Euler",
    "Ronin",
    "Nomad",
    "Beanstalk",
    "aave v3",
    "Uniswap",
    "euler finance",
    "Compound",
    "Balancer",
    "Cream",
    "eulr",
    "Sushi",
    "Zzqqxx Finance",
]


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _rounds(url: str, calls: int, rounds: int) -> tuple[float, float]:
    settings = Settings(database=DatabaseSettings(url=url), _env_file=None)
    scope = Scope(detailed=True)
    p50s, p99s = [], []
    async with open_runtime(settings, upgrade=True) as runtime:
        for _ in range(rounds):
            samples = []
            async with runtime.sessions() as session:
                for i in range(calls):
                    query = intel.ProtocolRiskQuery(protocol_name=NAMES[i % len(NAMES)])
                    start = time.perf_counter()
                    await intel.assess_protocol(session, query, scope)
                    samples.append((time.perf_counter() - start) * 1000)
            p50s.append(_quantile(samples, 0.5))
            p99s.append(_quantile(samples, 0.99))
    return statistics.median(p50s), statistics.median(p99s)


async def _postgres(calls: int, rounds: int) -> tuple[float, float]:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    name = f"kamiyo_bench_risk_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
        return await _rounds(url.render_as_string(hide_password=False), calls, rounds)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(backends: list[str], calls: int, rounds: int) -> None:
    for backend in backends:
        if backend == "sqlite":
            with TemporaryDirectory() as scratch:
                url = f"sqlite+aiosqlite:///{Path(scratch) / 'risk.db'}"
                p50, p99 = await _rounds(url, calls, rounds)
        else:
            p50, p99 = await _postgres(calls, rounds)
        print(f"{backend:<11} assess_protocol_risk  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.backends, args.calls, args.rounds))

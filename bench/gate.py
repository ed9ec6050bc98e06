"""The gate alone: microseconds per admit + complete, in process (no HTTP, no MCP).

    python -m bench.gate                          # OpenGate, AccountGate (memory, Redis)
    python -m bench.gate --calls 10000 --rounds 7 --redis-url redis://127.0.0.1:6379/0

Each run builds a fresh gate on a prepared SQLite database, makes ``--warmup`` calls (the first
looks the enterprise API key up; then the tier cache, ``tier_cache_s`` = 5 s, answers), then
times ``--calls`` calls of ``search_exploits`` with that key: ``admit``, ``complete(..., "ok",
10)``, and a yield to the event loop, as a server gives between requests, so the gate's
background work (the meter's batched writes) runs and is charged too; the meter's last flush
is inside the timing. Variants, alternated in every
round:

- ``open``: ``OpenGate`` (admits everything, records nothing): the floor.
- ``account_memory``: ``AccountGate`` with limits counted in this process.
- ``account_redis``: ``AccountGate`` with limits in Redis (``--redis-url``, a unique key prefix
  per run, deleted afterwards); skipped with a note when Redis does not answer.
- ``x402_quote``: ``AccountGate`` with x402 on (Base and Solana offers, the Solana transfer
  offer with its reference and MAC) and anonymous access off, called without a credential:
  every call is answered with a PaymentRequired and metered as ``payment_required`` (what an
  unpaid call costs the server; no chain is contacted).

The enterprise tier's limits are raised to 10**9 a minute and a day in this process (see
``bench/kamiyo_server.py``), so every call is counted but none is refused. The report gives
per variant the median over ``--rounds`` of each run's wall time per call (``us_per_call``) and
of its per-call p50 and p99 (admit + complete only), and the median added cost over ``open``;
the target is at most ~150 us added per call on the in-process path. ``redis_vs_memory`` is
the calls/s of ``account_redis`` against ``account_memory`` (target >= 0.8), and
``redis_ping_us`` a bare PING round trip timed in the same rounds: a limit shared exactly
across instances pays one round trip per call, so that is its floor.
"""

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import cast

import redis.asyncio
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.common import drop_prefix
from bench.kamiyo_server import create_enterprise_key, raise_limits
from bench.mcp import redis_up
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Call, Gate, Grant, OpenGate, Refusal
from kamiyo.chains import BASE, SOLANA, AcceptedNetwork
from kamiyo.config import (
    AnswerSettings,
    AuthSettings,
    DatabaseSettings,
    LogSettings,
    MeterSettings,
    RedisSettings,
    Settings,
)
from kamiyo.payments.cashier import open_cashier
from kamiyo.runtime import open_runtime
from kamiyo.service.catalogue import target

HERE = Path(__file__).parent
TOOL = "search_exploits"
TARGET = target(TOOL)
TARGET_ADDED_US = 150.0


def make_settings(data: Path, redis_url: str | None = None, prefix: str = "kamiyo") -> Settings:
    # Explicit values, so KAMIYO_* variables in the environment do not change what is measured.
    return Settings(
        database=DatabaseSettings(data_dir=data, url=None),
        redis=RedisSettings(url=redis_url, prefix=prefix),
        log=LogSettings(level="WARNING"),
        auth=AuthSettings(tier_cache_s=5),
        meter=MeterSettings(flush_s=1.0),
        answers=AnswerSettings(cache_ttl_s=30),
    )


def paying_settings(base: Settings) -> Settings:
    # Addresses only: quoting reads no chain. The relayer key is anvil's well-known first
    # development key (public), and the fee payer a throw-away keypair.
    from solders.keypair import Keypair

    networks = [
        AcceptedNetwork(
            network=BASE,
            pay_to="0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            rpc_urls=["http://127.0.0.1:9"],
        ),
        AcceptedNetwork(
            network=SOLANA,
            pay_to="3i476kTBBTy7pBGx4CXwJpJ6phuwLQgcwLTdHhU3c7ui",
            rpc_urls=["http://127.0.0.1:9"],
        ),
    ]
    return base.with_changes(
        # A pay-per-call-only server: with anonymous access on, the free tier would answer
        # these unpaid calls instead of quoting them.
        auth={"allow_anonymous": False},
        x402={
            "networks": networks,
            "evm_relayer_key": SecretStr(ANVIL_FIRST_KEY),
            "svm_fee_payer_key": SecretStr(str(Keypair())),
        },
    )


ANVIL_FIRST_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def usage_records(data: Path) -> int:
    with sqlite3.connect(data / "kamiyo.db") as db:
        return int(db.execute("SELECT count(*) FROM usage_records").fetchone()[0])


async def run_once(
    gate: Gate,
    sessions: async_sessionmaker[AsyncSession],
    key: str | None,
    warmup: int,
    calls: int,
) -> tuple[float, float, float]:
    """Wall time per call, and the p50 and p99 of admit + complete, in microseconds.

    Without a ``key`` every call must be refused for payment (the ``x402_quote`` variant)."""
    samples: list[float] = []
    async with gate.serving(sessions):
        for n in range(warmup + calls):
            if n == warmup:
                samples.clear()
                started = time.perf_counter()
            before = time.perf_counter()
            call = Call(TARGET, credential=key, resource=f"mcp://tool/{TOOL}", peer="127.0.0.1")
            grant = await gate.admit(call)
            if key is None:
                if not isinstance(grant, Refusal) or grant.reason != "payment_required":
                    raise RuntimeError(f"an unpaid benchmark call was not asked to pay: {grant}")
            elif not isinstance(grant, Grant):
                raise RuntimeError(f"the gate did not admit a benchmark call: {grant}")
            else:
                await gate.complete(call, grant, "ok", 10)
            samples.append(time.perf_counter() - before)
            await asyncio.sleep(0)
        if isinstance(gate, AccountGate):
            await gate.meter.flush()  # the rest of the metering, charged to this run
        elapsed = time.perf_counter() - started
    samples.sort()
    return (
        elapsed / calls * 1e6,
        samples[len(samples) // 2] * 1e6,
        samples[int(len(samples) * 0.99)] * 1e6,
    )


async def redis_round_trip(url: str, calls: int) -> float:
    """Microseconds per PING through redis-py's asyncio client: the floor any Redis-backed
    limit pays per call, to read ``account_redis`` against."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        # redis-py types ping() for its sync and async clients alike.
        await cast(Awaitable[bool], client.ping())  # connects
        started = time.perf_counter()
        for _ in range(calls):
            await cast(Awaitable[bool], client.ping())
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        await client.aclose()


async def bench(args: argparse.Namespace, data: Path) -> dict[str, object]:
    raise_limits()
    base = make_settings(data)
    variants = ["open", "account_memory", "x402_quote"]
    notes: list[str] = []
    if redis_up(args.redis_url):
        variants.append("account_redis")
    else:
        note = f"Redis at {args.redis_url} did not answer: account_redis skipped"
        print(note, file=sys.stderr)
        notes.append(note)
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    pings: list[float] = []
    async with open_runtime(base, upgrade=True) as runtime:
        key = await create_enterprise_key(runtime.sessions)
        for _ in range(args.rounds):
            for name in variants:
                prefix = f"kamiyo-bench-gate-{uuid.uuid4().hex[:12]}"
                gate: Gate
                if name == "open":
                    gate = OpenGate(base.answers.max_results)
                elif name == "account_memory":
                    gate = AccountGate(base)
                elif name == "x402_quote":
                    paying = paying_settings(base)
                    cashier = open_cashier(paying.x402, secret_key=paying.auth.secret_key)
                    gate = AccountGate(paying, cashier)
                else:
                    gate = AccountGate(make_settings(data, args.redis_url, prefix))
                recorded = usage_records(data)
                credential = None if name == "x402_quote" else key
                runs[name].append(
                    await run_once(gate, runtime.sessions, credential, args.warmup, args.calls)
                )
                if name != "open":
                    written = usage_records(data) - recorded
                    if written != args.warmup + args.calls:
                        raise RuntimeError(f"{name}: the meter wrote {written} records")
                if name == "account_redis" and not drop_prefix(args.redis_url, prefix):
                    raise RuntimeError("account_redis: no limit counters in Redis")
                print(f"  {name}: {runs[name][-1][0]:.1f} us/call", file=sys.stderr)
            if "account_redis" in variants:
                pings.append(await redis_round_trip(args.redis_url, args.calls))
    per_call = {name: statistics.median(r[0] for r in values) for name, values in runs.items()}
    added = {
        name: statistics.median(r[0] - o[0] for r, o in zip(values, runs["open"], strict=True))
        for name, values in runs.items()
        if name != "open"
    }
    return {
        "us_per_call": per_call,
        "p50_us": {name: statistics.median(r[1] for r in values) for name, values in runs.items()},
        "p99_us": {name: statistics.median(r[2] for r in values) for name, values in runs.items()},
        "added_us_vs_open": added,
        "target_added_us": TARGET_ADDED_US,
        # Calls/s of limits in Redis against limits in memory (issue 17's target: >= 0.8), and
        # one bare Redis round trip measured in the same rounds.
        "redis_vs_memory": (
            per_call["account_memory"] / per_call["account_redis"]
            if "account_redis" in per_call
            else None
        ),
        "redis_ping_us": statistics.median(pings) if pings else None,
        "within_target": {name: value <= TARGET_ADDED_US for name, value in added.items()},
        "notes": notes,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="timed calls per run")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls before them")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        report = asyncio.run(bench(args, Path(data)))
    print(json.dumps(report, indent=2))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"gate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"args": vars(args), **report}, indent=2))


if __name__ == "__main__":
    main()

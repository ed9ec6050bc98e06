"""MCP serving speed: KAMIYO's search_exploits against a bare SDK echo tool, in the same run.

    python -m bench.mcp                 # HTTP throughput (autocannon) and stdio latency
    python -m bench.mcp --rounds 5 --duration 15

HTTP: every server runs stateless JSON Streamable HTTP under uvicorn, one at a time, and
autocannon (``bench/node``, installed with ``npm ci --prefix bench/node``) posts one
``tools/call`` for ``--duration`` seconds with ``--connections`` connections; rounds alternate
the servers and the report gives medians and ratios to the echo server. Variants:

- ``echo``: the bare SDK (``bench/echo_server.py``).
- ``kamiyo_open``: KAMIYO with ``OpenGate`` (no credential, limits or metering), cache on.
- ``kamiyo_gate_cached``: KAMIYO with its ``AccountGate``: an enterprise API key in
  ``Authorization: Bearer``, limits counted in memory, every call metered, cache on.
- ``kamiyo_gate_uncached``: the same with ``KAMIYO_CACHE_TTL_S=0`` (every call runs the query),
  cycling through a mix of 66 different searches (``bench/mcp_queries.py``).
- ``kamiyo_gate_uncached_pg``: ``kamiyo_gate_uncached`` on PostgreSQL: a fresh database on
  ``--postgres-url``'s server, migrated and loaded before the rounds, dropped afterwards;
  skipped when PostgreSQL does not answer.
- ``kamiyo_gate_redis``: ``kamiyo_gate_cached`` with limits in Redis (``--redis-url``, a unique
  ``KAMIYO_REDIS_PREFIX`` per run, its keys deleted afterwards); skipped when Redis is down.

KAMIYO runs through ``bench/kamiyo_server.py``, which raises the enterprise tier's limits to
10**9 a minute and a day in the server process: every call is still identified, counted and
metered, none is refused. After each run one more call must succeed (no ``isError``) and, for
the gate variants, the usage records the server wrote must number at least the calls autocannon
completed, all ``ok``.

stdio: the SDK's client calls each server's tool ``--calls`` times in turn (KAMIYO with the
enterprise key in ``KAMIYO_API_KEY``); p50 and p99.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from mcp import Client, StdioServerParameters

from bench.common import drop_prefix, free_port, stop_process
from bench.mcp_databases import Database, PostgresDatabase, prepare, usage_by_status
from bench.mcp_queries import search_mix

HERE = Path(__file__).parent
AUTOCANNON = HERE / "node" / "node_modules" / ".bin" / "autocannon"
CYCLE = HERE / "node" / "cycle.js"
SEARCH = {"name": "search_exploits", "arguments": {"query": "euler", "limit": 10}}
ECHO = {"name": "echo", "arguments": {"text": "euler"}}
# The uncached variants' calls: every connection cycles through them.
SEARCH_MIX: list[Mapping[str, object]] = [
    {"name": "search_exploits", "arguments": a} for a in search_mix()
]

HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


def post(url: str, message: Mapping[str, object], headers: Mapping[str, str]) -> Any:
    body = json.dumps(message).encode()
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def start(
    command: list[str], env: dict[str, str], url: str, headers: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            post(url, {"jsonrpc": "2.0", "id": 0, "method": "ping"}, headers)
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"{url} never answered")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: uvicorn finishes, then KAMIYO's shutdown writes the meter's last batch."""
    stop_process(process)


def check_call(url: str, call: Mapping[str, object], headers: Mapping[str, str]) -> None:
    """One more call like autocannon's must succeed: a result, not a refusal or an error."""
    answer = post(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}, headers)
    result = answer.get("result")
    if not isinstance(result, dict) or result.get("isError"):
        raise RuntimeError(f"{url}: the check call failed: {json.dumps(answer)[:300]}")


def autocannon(
    url: str,
    calls: list[Mapping[str, object]],
    duration: int,
    connections: int,
    headers: Mapping[str, str],
) -> tuple[float, int]:
    """Average calls per second and the number of calls completed; each connection sends
    ``calls`` in turn (``bench/node/cycle.js``: the autocannon CLI sends a single body)."""
    bodies = [
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
        for call in calls
    ]
    job = {
        "url": url,
        "connections": connections,
        "duration": duration,
        "headers": dict(headers),
        "bodies": bodies,
    }
    out = subprocess.run(
        ["node", str(CYCLE)], input=json.dumps(job), capture_output=True, text=True, check=True
    ).stdout
    report = json.loads(out)
    if report["non2xx"] or report["errors"]:
        raise RuntimeError(f"{url}: {report['non2xx']} non-2xx, {report['errors']} errors")
    return float(report["requests"]["average"]), int(report["requests"]["total"])


def check_metered(name: str, before: Counter[str], after: Counter[str], calls: int) -> int:
    """Every call of the run was recorded as ok, and nothing was refused; returns the count."""
    written = after - before
    ok = written.pop("ok", 0)
    if written or ok < calls:
        raise RuntimeError(f"{name}: {calls} calls answered, usage records {dict(written)} {ok=}")
    return ok


def redis_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class Variant:
    name: str
    command: list[str]
    calls: list[Mapping[str, object]]
    database: str  # where its usage records go: a SQLite file or a PostgreSQL URL
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    metered: bool = False
    redis_url: str | None = None


def http_variants(
    sqlite: Database, postgres: Database | None, redis_url: str | None
) -> list[Variant]:
    kamiyo = [sys.executable, "-m", "bench.kamiyo_server", "--transport", "http"]
    bearer = {"Authorization": f"Bearer {sqlite.key}"}
    uncached = {"KAMIYO_CACHE_TTL_S": "0"}
    echo = [sys.executable, "-m", "bench.echo_server", "--transport", "http"]
    here = sqlite.location
    variants = [
        Variant("echo", echo, [ECHO], here),
        Variant("kamiyo_open", [*kamiyo, "--open"], [SEARCH], here),
        Variant("kamiyo_gate_cached", kamiyo, [SEARCH], here, headers=bearer, metered=True),
        Variant("kamiyo_gate_uncached", kamiyo, SEARCH_MIX, here, uncached, bearer, metered=True),
    ]
    if postgres is not None:
        variants.append(
            Variant(
                "kamiyo_gate_uncached_pg",
                kamiyo,
                SEARCH_MIX,
                postgres.location,
                uncached | postgres.env,
                {"Authorization": f"Bearer {postgres.key}"},
                metered=True,
            )
        )
    if redis_url is not None:
        variants.append(
            Variant(
                "kamiyo_gate_redis",
                kamiyo,
                [SEARCH],
                here,
                env={"KAMIYO_REDIS_URL": redis_url},
                headers=bearer,
                metered=True,
                redis_url=redis_url,
            )
        )
    return variants


def http_throughput(
    args: argparse.Namespace, env: dict[str, str], sqlite: Database, postgres: Database | None
) -> dict[str, object]:
    """Calls per second of each variant, and each one's ratio to the echo server's.

    The cached variants repeat one request, so every call after the first is a cache hit; the
    uncached ones (KAMIYO_CACHE_TTL_S=0) cycle through the mix and every call runs its query.
    """
    notes: list[str] = []
    redis_url: str | None = args.redis_url
    if redis_url is not None and not redis_up(redis_url):
        notes.append(f"Redis at {redis_url} did not answer: kamiyo_gate_redis skipped")
        print(f"  {notes[-1]}", file=sys.stderr)
        redis_url = None
    if args.postgres_url and postgres is None:
        notes.append("PostgreSQL did not answer: kamiyo_gate_uncached_pg skipped")
        print(f"  {notes[-1]}", file=sys.stderr)
    variants = http_variants(sqlite, postgres, redis_url)
    if args.variants:  # echo always runs: every ratio is to it
        wanted = {"echo", *args.variants.split(",")}
        variants = [variant for variant in variants if variant.name in wanted]
    runs: dict[str, list[float]] = {variant.name: [] for variant in variants}
    metered: dict[str, list[int]] = {variant.name: [] for variant in variants if variant.metered}
    for _ in range(args.rounds):
        for variant in variants:
            port = free_port()
            url = f"http://127.0.0.1:{port}/mcp"
            headers = HEADERS | variant.headers
            run_env = env | variant.env
            prefix = f"kamiyo-bench-{uuid.uuid4().hex[:12]}"
            if variant.redis_url is not None:
                run_env["KAMIYO_REDIS_PREFIX"] = prefix
            before = usage_by_status(variant.database)
            process = start([*variant.command, "--port", str(port)], run_env, url, headers)
            try:
                rate, calls = autocannon(
                    url, variant.calls, args.duration, args.connections, headers
                )
                for call in variant.calls:
                    check_call(url, call, headers)
            finally:
                stop(process)
            runs[variant.name].append(rate)
            if variant.metered:
                after = usage_by_status(variant.database)
                total = calls + len(variant.calls)
                metered[variant.name].append(check_metered(variant.name, before, after, total))
            if variant.redis_url is not None and not drop_prefix(variant.redis_url, prefix):
                raise RuntimeError(f"{variant.name}: the limiter left no counters in Redis")
            print(f"  {variant.name}: {rate:.0f} calls/s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "calls_per_s": medians,
        "ratio_vs_echo": {
            name: value / medians["echo"] for name, value in medians.items() if name != "echo"
        },
        # Each round's ratio to that round's echo, then the median: steadier than the ratio of
        # medians when the load of a shared machine drifts between rounds.
        "ratio_vs_echo_per_round": {
            name: statistics.median(v / e for v, e in zip(values, runs["echo"], strict=True))
            for name, values in runs.items()
            if name != "echo"
        },
        "runs": runs,
        "usage_records_ok": metered,
        "notes": notes,
    }


async def stdio_latency(calls: int, env: dict[str, str], sqlite: Database) -> dict[str, object]:
    results: dict[str, object] = {}
    kamiyo = ["-m", "bench.kamiyo_server"]
    for name, args, call, extra_env in (
        ("echo", ["-m", "bench.echo_server"], ECHO, {}),
        ("kamiyo_open", [*kamiyo, "--open"], SEARCH, {}),
        ("kamiyo_gate", kamiyo, SEARCH, {"KAMIYO_API_KEY": sqlite.key}),
    ):
        params = StdioServerParameters(
            command=sys.executable, args=args, env=env | extra_env, cwd=os.getcwd()
        )
        before = usage_by_status(sqlite.location)
        tool, arguments = str(call["name"]), call["arguments"]
        async with Client(params, mode="legacy") as client:
            samples = []
            for n in range(20 + calls):
                started = time.perf_counter()
                result = await client.call_tool(tool, arguments)  # type: ignore[arg-type]
                if n >= 20:
                    samples.append((time.perf_counter() - started) * 1000)
                if result.is_error:
                    raise RuntimeError(f"stdio {name}: {result.content}")
        if extra_env:  # the gate's server has exited and written its usage records
            check_metered(name, before, usage_by_status(sqlite.location), 20 + calls)
        samples.sort()
        results[name] = {
            "p50_ms": samples[len(samples) // 2],
            "p99_ms": samples[int(len(samples) * 0.99)],
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per HTTP run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument(
        "--calls", type=int, default=500, help="stdio calls per server; 0 skips stdio"
    )
    parser.add_argument("--variants", default="", help="only these HTTP variants, e.g. a,b")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "KAMIYO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL server to create kamiyo_gate_uncached_pg's database on; empty skips",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="Redis for kamiyo_gate_redis; an empty value skips that variant",
    )
    args = parser.parse_args()
    args.redis_url = args.redis_url or None
    if not AUTOCANNON.exists() or shutil.which("node") is None:
        sys.exit(f"autocannon is missing: run `npm ci --prefix {HERE / 'node'}`")
    pg = PostgresDatabase(args.postgres_url) if args.postgres_url else None
    pg_created = pg is not None and pg.create()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
            env |= {"KAMIYO_DATA_DIR": tmp, "KAMIYO_LOG_LEVEL": "WARNING"}
            sqlite = prepare(env, str(Path(tmp) / "kamiyo.db"))
            postgres = None
            if pg is not None and pg_created:
                postgres = prepare(env, pg.url, {"KAMIYO_DATABASE_URL": pg.url})
            report = {
                "http": http_throughput(args, env, sqlite, postgres),
                "stdio": asyncio.run(stdio_latency(args.calls, env, sqlite)) if args.calls else {},
            }
    finally:
        if pg is not None and pg_created:
            pg.drop()
    print(json.dumps(report, indent=2))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"mcp-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"args": vars(args), **report}, indent=2))


if __name__ == "__main__":
    main()

"""Event-loop CPU per MCP call, in process: steadier than calls per second on a shared machine.

    python -m bench.mcp_cpu                    # echo, KAMIYO uncached on SQLite and PostgreSQL
    python -m bench.mcp_cpu --calls 2000 --backends sqlite

Serves each app in this process over ASGI (httpx's ASGI transport: no sockets, no uvicorn)
and drives it with 10 concurrent clients: the bare SDK echo, and KAMIYO as ``bench.mcp``'s
``kamiyo_gate_uncached`` runs it (enterprise key, limits, metering, answer cache off, the 66
searches of ``bench/mcp_queries.py``). It reports the CPU time of the event loop's thread per
call (``time.thread_time``: what a loaded machine's other processes do not add to, unlike wall
time), statements per call, and response bytes. The client's own share is in every figure
alike; the ratio ``echo / variant`` estimates the throughput ratio of a server bound by its
event loop, which is what the uncached path is on one core.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp

from bench.mcp import ECHO, HEADERS, SEARCH_MIX
from bench.mcp_databases import PostgresDatabase, prepare

RESULTS = Path(__file__).parent / "results"
CLIENTS = 10


async def measure(
    app: Any, calls: list[Any], headers: dict[str, str], total: int
) -> dict[str, float]:
    statements: Counter[str] = Counter()

    def count(*args: Any) -> None:
        statements[args[2].split(None, 1)[0].upper()] += 1

    sizes: list[int] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000"
        ) as client:

            async def one(n: int) -> None:
                call = calls[n % len(calls)]
                message = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": call}
                response = await client.post("/mcp", json=message, headers=headers)
                if response.json()["result"].get("isError"):
                    raise RuntimeError(f"{call}: {response.text[:300]}")
                sizes.append(len(response.content))

            async def clients(each: int) -> None:
                async def run(first: int) -> None:
                    for n in range(first, first + each):
                        await one(n)

                await asyncio.gather(*(run(c * each) for c in range(CLIENTS)))

            await clients(20)  # warm: connections, statement caches, identities
            sizes.clear()
            event.listen(Engine, "before_cursor_execute", count)
            try:
                cpu, wall = time.thread_time(), time.perf_counter()
                await clients(total // CLIENTS)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            finally:
                event.remove(Engine, "before_cursor_execute", count)
    done = len(sizes)
    return {
        "cpu_us_per_call": cpu / done * 1e6,
        "wall_us_per_call": wall / done * 1e6,
        "statements_per_call": sum(statements.values()) / done,
        "response_bytes": sum(sizes) / done,
    }


def kamiyo_app(env: dict[str, str]) -> ASGIApp:
    for name in [name for name in os.environ if name.startswith("KAMIYO_")]:
        del os.environ[name]  # the previous variant's database
    os.environ.update(env)
    import kamiyo.mcpserver.server
    import kamiyo.web.app
    from bench.kamiyo_server import raise_limits
    from kamiyo.config import Settings

    raise_limits()
    return kamiyo.web.app.create_app(
        Settings(), kamiyo.mcpserver.server.build_server, stateless=True, json_response=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=660)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "KAMIYO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    from bench.echo_server import server

    databases: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    pgs: list[PostgresDatabase] = []
    rounds: dict[str, list[dict[str, float]]] = {"echo": []}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
            env |= {"KAMIYO_DATA_DIR": tmp, "KAMIYO_LOG_LEVEL": "WARNING"}
            for backend in args.backends.split(","):
                extra: dict[str, str] = {}
                if backend == "postgresql":
                    pg = PostgresDatabase(args.postgres_url)
                    if not pg.create():
                        print(f"PostgreSQL at {args.postgres_url} did not answer", file=sys.stderr)
                        continue
                    pgs.append(pg)
                    extra = {"KAMIYO_DATABASE_URL": pg.url}
                database = prepare(env, str(Path(tmp) / "kamiyo.db"), extra)
                headers = HEADERS | {"Authorization": f"Bearer {database.key}"}
                databases[f"kamiyo_uncached_{backend}"] = (
                    env | extra | {"KAMIYO_CACHE_TTL_S": "0"},
                    headers,
                )
                rounds[f"kamiyo_uncached_{backend}"] = []
            for _ in range(args.rounds):  # alternated, so a change of load hits every variant
                echo = server.streamable_http_app(stateless_http=True, json_response=True)
                rounds["echo"].append(asyncio.run(measure(echo, [ECHO], dict(HEADERS), args.calls)))
                for name, (run_env, headers) in databases.items():
                    app = kamiyo_app(run_env)
                    rounds[name].append(asyncio.run(measure(app, SEARCH_MIX, headers, args.calls)))
        finally:
            for pg in pgs:
                pg.drop()
    rows = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rounds.items()
    }
    echo_cpu = rows["echo"]["cpu_us_per_call"]
    lines = [
        f"{'variant':28s} {'CPU us/call':>11s} {'echo/it':>8s} {'wall us':>9s} "
        f"{'stmts':>6s} {'bytes':>7s}"
    ]
    for name, row in rows.items():
        lines.append(
            f"{name:28s} {row['cpu_us_per_call']:11.0f} {echo_cpu / row['cpu_us_per_call']:8.2f} "
            f"{row['wall_us_per_call']:9.0f} {row['statements_per_call']:6.2f} "
            f"{row['response_bytes']:7.0f}"
        )
    report = "\n".join(lines) + (
        f"\nmedians of {args.rounds} alternated rounds of {args.calls} calls, {CLIENTS} clients\n"
    )
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (RESULTS / f"mcp-cpu-{stamp}.txt").write_text(report)


if __name__ == "__main__":
    main()

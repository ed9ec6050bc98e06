"""Alert latency: from an ingest's commit to MCP notifications and to webhook receipts.

    python -m bench.alerts                                 # 1,000 sessions, 1,000 rules, SQLite
    python -m bench.alerts --sessions 200 --rules 200 --rounds 3 --database postgresql
    python -m bench.alerts --transport memory              # in-memory SDK clients instead

One process serves KAMIYO's MCP server with its alerts worker (``service.running``) on a fresh
database. ``--transport http`` (the default): the ASGI app under uvicorn, and ``--sessions``
Streamable HTTP sessions opened by ``bench/alert_sessions.py`` in another process, each
subscribed to ``kamiyo://exploits/recent`` (handshake era) with its GET stream open;
``--transport memory``: in-memory SDK clients in this process (both ends share one event loop).
``--rules`` alert rules with no filter post to a receiver in a process of its own
(``bench/webhook_receiver.py``, on loopback). Each round ingests one new incident through the
real ingest path, wakes the worker as a local ingest does, and waits until every session has
been told and every rule's webhook has arrived. Per round, from the commit: when the change
reached the bus (``published_ms``), when the server handed each session's notification to its
transport (``handed_*``), when each client read it (``notify_*``) and when each webhook arrived
(``webhook_*``), p50 and p99, and their medians over the rounds; and the memory (RSS) the
subscribed sessions took, per session. Incidents ingested on another instance are found by the
next poll instead (``KAMIYO_ALERTS_POLL_S``, 0.5 s), which adds up to that much.
"""

import argparse
import asyncio
import datetime as dt
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from mcp import Client
from mcp.server.connection import Connection
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import ResourceUpdatedNotification
from pydantic import SecretStr

from kamiyo.access.gate import OpenGate
from kamiyo.alerts.secrets import new_secret, seal
from kamiyo.config import Settings
from kamiyo.db.alerts import AlertRule
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Store
from kamiyo.mcpserver.server import build_server
from kamiyo.mcpserver.uris import RECENT_URI
from kamiyo.service.running import running
from kamiyo.service.state import ServerState
from kamiyo.web.app import create_app

HERE = Path(__file__).parent
SECRET_KEY = "bench-alerts-" + "k" * 40


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Receipts:
    """Webhook arrival times read from the receiver's stdout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.times: dict[str, float] = {}
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            arrived, webhook_id = line.split()
            self.times[webhook_id] = float(arrived)


def receiver() -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_receiver", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}/hook"


def report(n: int) -> SourceReport:
    return SourceReport(
        source="defillama",
        source_id=f"bench-{uuid.uuid4().hex[:12]}",
        url="https://example.org/bench",
        date=dt.datetime.now(dt.UTC).date(),
        protocol=f"Bench Protocol {n} {uuid.uuid4().hex[:6]}",
        chains=["ethereum"],
        loss_usd=1_000_000,
        loss_usd_basis="usd",
        loss_text="$1M",
        attack_type_raw="Reentrancy",
        description="A synthetic incident for the alerts benchmark.",
    )


def settings_for(url: str) -> Settings:
    return Settings(
        environment="test",
        database={"url": url},
        auth={"secret_key": SecretStr(SECRET_KEY)},
        webhooks={"allow_loopback": True},
        log={"level": "WARNING"},
        _env_file=None,
    )


async def add_rules(runtime: Any, count: int, hook: str) -> None:
    async with runtime.sessions() as session:
        secret = seal(SecretStr(SECRET_KEY), new_secret())
        now = dt.datetime.now(dt.UTC)
        session.add_all(
            AlertRule(
                id=f"alr_bench{n}",
                payer="0x" + "11" * 20,
                name=f"bench {n}",
                filters={},
                webhook_url=hook,
                secret=secret,
                enabled=True,
                failures=0,
                created_at=now,
            )
            for n in range(count)
        )
        await session.commit()


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    receiving, hook = receiver()
    receipts = Receipts(receiving)
    told: dict[int, list[float]] = {}
    result: dict[str, Any] = {
        "transport": args.transport,
        "sessions": args.sessions,
        "rules": args.rules,
        "rounds": [],
    }
    try:
        if args.transport == "memory":
            await _rounds_in_memory(args, settings_for(url), hook, told, receipts, result)
        else:
            await _rounds_over_http(args, settings_for(url), hook, told, receipts, result)
    finally:
        receiving.terminate()
        receiving.wait(10)
    for key in (
        "published_ms",
        "handed_p50_ms",
        "handed_p99_ms",
        "notify_p50_ms",
        "notify_p99_ms",
        "webhook_p50_ms",
        "webhook_p99_ms",
    ):
        values = [r[key] for r in result["rounds"] if r[key] is not None]
        result[key] = round(statistics.median(values), 1) if values else None
    return result


async def _rounds(
    args: argparse.Namespace,
    state: ServerState,
    told: dict[int, list[float]],
    receipts: Receipts,
    result: dict[str, Any],
) -> None:
    for n in range(args.rounds):
        measured = await one_round(state, state.require_runtime(), n, told, receipts, args)
        result["rounds"].append(measured)
        print(json.dumps(measured), file=sys.stderr)


async def _rounds_in_memory(
    args: argparse.Namespace,
    settings: Settings,
    hook: str,
    told: dict[int, list[float]],
    receipts: Receipts,
    result: dict[str, Any],
) -> None:
    """Sessions as in-memory SDK clients in this process (both ends share one event loop)."""
    state = ServerState(settings=settings, gate=OpenGate(settings.answers.max_results))
    server = build_server(state)
    async with running(state) as runtime:
        await add_rules(runtime, args.rules, hook)
        before = rss_mb()
        clients = await open_sessions(server, args.sessions, told)
        result["rss_mb_per_session"] = round((rss_mb() - before) / max(args.sessions, 1), 3)
        try:
            await _rounds(args, state, told, receipts, result)
        finally:
            for client in reversed(clients):
                await client.__aexit__(None, None, None)


async def _rounds_over_http(
    args: argparse.Namespace,
    settings: Settings,
    hook: str,
    told: dict[int, list[float]],
    receipts: Receipts,
    result: dict[str, Any],
) -> None:
    """The ASGI app served by uvicorn in this process; Streamable HTTP sessions opened by
    ``bench.alert_sessions`` in another process (as remote clients would be)."""
    states: list[ServerState] = []

    def build(state: ServerState) -> Any:
        states.append(state)
        return build_server(state)

    app = create_app(settings, build, gate=OpenGate(settings.answers.max_results))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, backlog=4096)
    web = uvicorn.Server(config)
    serving = asyncio.create_task(web.serve())
    clients: subprocess.Popen[str] | None = None
    try:
        while not web.started:  # noqa: ASYNC110 - uvicorn says so by a flag only
            await asyncio.sleep(0.05)
        [state] = states
        await add_rules(state.require_runtime(), args.rules, hook)
        before = rss_mb()
        url = f"http://127.0.0.1:{port}/mcp"
        clients = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
            [
                *(sys.executable, "-m", "bench.alert_sessions"),
                *("--url", url, "--sessions", str(args.sessions), "--uri", RECENT_URI),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE.parent,
        )
        ready = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=_read_told, args=(clients, told, lambda: loop.call_soon_threadsafe(ready.set))
        ).start()
        await asyncio.wait_for(ready.wait(), args.timeout)
        result["rss_mb_per_session"] = round((rss_mb() - before) / max(args.sessions, 1), 3)
        await _rounds(args, state, told, receipts, result)
    finally:
        if clients is not None:
            clients.terminate()
            clients.wait(10)
        web.should_exit = True
        await serving


def _read_told(
    process: subprocess.Popen[str], told: dict[int, list[float]], ready: Callable[[], None]
) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "ready":
            ready()
            continue
        arrived, index = line.split()
        told.setdefault(int(index), []).append(float(arrived))


async def open_sessions(server: Any, count: int, told: dict[int, list[float]]) -> list[Client]:
    clients = []
    for index in range(count):

        async def inbox(message: Any, index: int = index) -> None:
            if isinstance(message, ResourceUpdatedNotification):
                told.setdefault(index, []).append(time.time())

        client = Client(server, mode="legacy", message_handler=inbox)
        await client.__aenter__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(RECENT_URI)
        clients.append(client)
    return clients


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# When the server handed each session's resources/updated to its transport (the SDK's send
# returned): our part of the latency, apart from how fast the client side reads. A probe for
# this benchmark only, around the SDK's method; the server code is not changed.
HANDED_OVER: list[float] = []


def _probe_sends() -> None:
    send = Connection.send_resource_updated

    async def timed(self: Connection, *args: Any, **kwargs: Any) -> None:
        await send(self, *args, **kwargs)
        HANDED_OVER.append(time.time())

    Connection.send_resource_updated = timed  # type: ignore[method-assign]


async def one_round(
    state: ServerState,
    runtime: Any,
    n: int,
    told: dict[int, list[float]],
    receipts: Receipts,
    args: argparse.Namespace,
) -> dict[str, Any]:
    told.clear()
    receipts.times.clear()
    published: list[float] = []
    HANDED_OVER.clear()
    leave = state.changes.subscribe(lambda event: published.append(time.time()))
    async with runtime.sessions() as session:
        store = await Store.load(session)
        await store.ingest(session, [report(n)], origin="live")
        await session.commit()
    committed = time.time()
    assert state.alerts is not None
    state.alerts.wake()  # what a local ingest's data watch does
    deadline = time.monotonic() + args.timeout
    while (  # noqa: ASYNC110 - two counts, filled by clients and by the receiver's thread
        len(told) < args.sessions or len(receipts.times) < args.rules
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    leave()
    notify = [(times[0] - committed) * 1000 for times in told.values()]
    handed = [(t - committed) * 1000 for t in HANDED_OVER]
    hooks = [(t - committed) * 1000 for t in receipts.times.values()]
    return {
        "round": n,
        "told": len(notify),
        "received": len(hooks),
        # When the worker told this instance's change bus (the fan-out to sessions starts).
        "published_ms": round((published[0] - committed) * 1000, 1) if published else None,
        "handed_p50_ms": round(percentile(handed, 0.5), 1) if handed else None,
        "handed_p99_ms": round(percentile(handed, 0.99), 1) if handed else None,
        "notify_p50_ms": round(percentile(notify, 0.5), 1) if notify else None,
        "notify_p99_ms": round(percentile(notify, 0.99), 1) if notify else None,
        "webhook_p50_ms": round(percentile(hooks, 0.5), 1) if hooks else None,
        "webhook_p99_ms": round(percentile(hooks, 0.99), 1) if hooks else None,
    }


async def database_url(args: argparse.Namespace, folder: Path) -> str:
    if args.database == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    name = f"kamiyo_bench_alerts_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    server: str = args.postgres_url.rsplit("/", 1)[0]
    return f"{server}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["http", "memory"], default="http")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    _probe_sends()
    with tempfile.TemporaryDirectory() as folder:
        url = asyncio.run(database_url(args, Path(folder)))
        result = asyncio.run(run(args, url))
    result["database"] = args.database
    print(json.dumps(result, indent=2))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"alerts-{stamp}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

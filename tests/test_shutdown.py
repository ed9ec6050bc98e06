"""Graceful shutdown of ``kamiyo serve --transport http``, as real processes on PostgreSQL.

The slow call is a real one: the test holds an exclusive lock on the incidents table, so a
search waits in the database (seen in ``pg_locks``) until the test lets it go. No code path of
the product exists for the test.
"""

import asyncio
import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kamiyo.access.meter import Meter, UsageEvent
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from tests.conftest import PostgresDatabases
from tests.mcpserver.conftest import http_server_process, server_env

pytestmark = pytest.mark.anyio

PATIENCE_S = 60  # far beyond what each step needs: a bound for a broken build, not a measure
SEARCH = "/api/v1/exploits?query=flash%20loan&limit=5"
SLOW_SEARCH = "/api/v1/exploits?query=oracle&limit=5"  # another query: not a cached answer


def plain_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def table_locked(url: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """``table`` locked against every reader and writer until the block ends."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield connection
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


def incidents_locked(url: str) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """The incidents table locked: a search waits in the database (a call in flight)."""
    return table_locked(url, "incidents")


async def wait_for_blocked_reader(watcher: asyncpg.Connection) -> None:
    """Until a server connection waits for the lock the test holds (the call is in flight)."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the search never reached the database")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=PATIENCE_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def refused(base: str) -> bool:
    parts = urlsplit(base)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def wait_until_refused(base: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if refused(base):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server kept accepting connections after SIGTERM")


def answer_status(call: "Future[tuple[int, bytes]]") -> int:
    try:
        return call.result(timeout=PATIENCE_S)[0]
    except (urllib.error.URLError, ConnectionError, OSError):
        return 599  # the connection was closed without an answer


def open_event_stream(base: str) -> socket.socket:
    """A legacy ``GET /sse`` stream, its answer's head read: it stays open until the server
    ends it."""
    parts = urlsplit(base)
    stream = socket.create_connection((parts.hostname, parts.port), timeout=PATIENCE_S)
    host = f"{parts.hostname}:{parts.port}"
    stream.sendall(
        f"GET /sse HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += stream.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return stream


def read_to_end(stream: socket.socket) -> bytes:
    received = b""
    while chunk := stream.recv(4096):
        received += chunk
    return received


async def usage_statuses(url: str) -> list[str]:
    connection = await asyncpg.connect(plain_url(url))
    try:
        rows = await connection.fetch(
            "SELECT status FROM usage_records WHERE tool = 'search_exploits' ORDER BY seq"
        )
    finally:
        await connection.close()
    return [row["status"] for row in rows]


async def test_sigterm_finishes_the_call_in_flight_then_meters_it(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    url = await postgres_databases.create()
    env = {"KAMIYO_DATABASE_URL": url, "KAMIYO_SHUTDOWN_GRACE_S": str(PATIENCE_S)}
    with (
        http_server_process(tmp_path, [], env) as (base, process),
        ThreadPoolExecutor(1) as pool,
    ):
        assert get(base + SEARCH)[0] == 200  # warm: the first call opens what it needs
        stream = open_event_stream(base)
        async with incidents_locked(url) as watcher:
            slow: Future[tuple[int, bytes]] = pool.submit(get, base + SLOW_SEARCH)
            await wait_for_blocked_reader(watcher)
            process.send_signal(signal.SIGTERM)
            await wait_until_refused(base)  # stopped accepting, with the call still running
            # The event stream was told to go (else it would hold the stop to the deadline and
            # the exit status below would be 1): its answer ends cleanly.
            with stream:
                assert read_to_end(stream).endswith(b"0\r\n\r\n")  # the chunked body's end
            assert process.poll() is None
            assert not slow.done()
        status, body = slow.result(timeout=PATIENCE_S)  # the lock is gone: it finishes
        assert status == 200
        assert json.loads(body)["incidents"]
        assert process.wait(timeout=PATIENCE_S) == 0  # a clean stop
    assert await usage_statuses(url) == ["ok", "ok"]  # the last call was metered on the way out
    log = (tmp_path / "server.log").read_text()
    assert "Stopping: no new connections" in log
    assert "cancelling" not in log


async def test_past_the_deadline_the_call_is_cut_counted_and_the_exit_is_non_zero(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    url = await postgres_databases.create()
    env = {"KAMIYO_DATABASE_URL": url, "KAMIYO_SHUTDOWN_GRACE_S": "1"}
    with (
        http_server_process(tmp_path, [], env) as (base, process),
        ThreadPoolExecutor(1) as pool,
    ):
        assert get(base + SEARCH)[0] == 200
        async with incidents_locked(url) as watcher:
            slow = pool.submit(get, base + SLOW_SEARCH)
            await wait_for_blocked_reader(watcher)
            process.send_signal(signal.SIGTERM)
            # The lock outlives the deadline: the server must give up on the call and exit.
            status = await asyncio.to_thread(process.wait, PATIENCE_S)
            assert status == 1
            assert answer_status(slow) >= 500  # the caller got no answer (a 500, or a cut)
    log = (tmp_path / "server.log").read_text()
    assert "cancelling 1 call(s) still running" in log
    assert await usage_statuses(url) == ["ok"]  # the cut call was neither recorded nor charged


def test_a_process_that_never_started_keeps_its_exit_status(tmp_path: Path) -> None:
    """A configuration mistake still exits 2 with one line, not as a shutdown."""
    run = subprocess.run(
        [sys.executable, "-m", "kamiyo", "serve", "--transport", "http"],
        env=server_env(tmp_path) | {"KAMIYO_SHUTDOWN_GRACE_S": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "KAMIYO_SHUTDOWN_GRACE_S" in run.stderr
    assert "Traceback" not in run.stderr


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'kamiyo.db'}"


async def count_rows(url: str, query: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text(query))).scalar_one())
    finally:
        await engine.dispose()


def start_worker(tmp_path: Path, url: str, log_path: Path) -> "subprocess.Popen[bytes]":
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kamiyo", "worker"],
            env=server_env(tmp_path) | {"KAMIYO_DATABASE_URL": url},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=log,
        )


async def test_the_worker_prunes_usage_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
        meter = Meter(flush_interval_s=3600)
        async with meter.running(session_factory(engine)):
            for tool in ("search_exploits", "get_exploit"):
                meter.record(UsageEvent(old, 3, None, tool, "personal", "ok", 900, 1, 1))
    finally:
        await engine.dispose()
    log_path = tmp_path / "worker.log"
    worker = start_worker(tmp_path, url, log_path)
    try:
        deadline = time.monotonic() + PATIENCE_S
        while not await count_rows(url, "SELECT count(*) FROM usage_checkpoints"):
            assert time.monotonic() < deadline, "the worker never pruned"
            assert worker.poll() is None, log_path.read_text()
            await asyncio.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, PATIENCE_S) == 130  # as after Ctrl-C
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=PATIENCE_S)
    assert await count_rows(url, "SELECT count(*) FROM usage_records") == 0
    assert await count_rows(url, "SELECT sum(calls) FROM usage_daily") == 2
    logged = log_path.read_text()
    assert "usage retention: 2 records of 1 chain(s)" in logged
    assert "Traceback" not in logged

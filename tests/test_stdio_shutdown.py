"""Graceful shutdown of ``kamiyo serve`` on stdio: at EOF, and at SIGTERM with stdin open.

As in test_shutdown.py, the slow call is a real one, held in PostgreSQL by the test's lock on
the incidents table.
"""

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import PostgresDatabases
from tests.mcpserver.conftest import server_env
from tests.test_shutdown import (
    PATIENCE_S,
    count_rows,
    incidents_locked,
    sqlite_url,
    table_locked,
    usage_statuses,
    wait_for_blocked_reader,
)
from tests.web.raw_http import INITIALIZE, INITIALIZED

pytestmark = pytest.mark.anyio


def search(request_id: int, query: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "search_exploits", "arguments": {"query": query}},
    }


def send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    stdin.write((json.dumps(message) + "\n").encode())
    stdin.flush()


@contextmanager
def stdio_server_process(
    tmp_path: Path, env: dict[str, str]
) -> Iterator["subprocess.Popen[bytes]"]:
    """``kamiyo serve`` on stdio, initialized; its log in ``server.log``."""
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kamiyo", "serve"],
            env=server_env(tmp_path) | env,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        send(process.stdin, INITIALIZE)
        assert json.loads(process.stdout.readline())["id"] == INITIALIZE["id"]
        send(process.stdin, INITIALIZED)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=PATIENCE_S)


async def wait_for_log(tmp_path: Path, line: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while line not in (tmp_path / "server.log").read_text():
        assert time.monotonic() < deadline, f"never logged {line!r}"
        await asyncio.sleep(0.05)


def answers(stdout: IO[bytes]) -> dict[int, dict[str, Any]]:
    """Every answer written until the server closed stdout."""
    return {a["id"]: a for a in map(json.loads, stdout.read().decode().splitlines())}


async def test_sigterm_with_stdin_open_finishes_the_call_in_flight_then_meters_it(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    url = await postgres_databases.create()
    env = {"KAMIYO_DATABASE_URL": url, "KAMIYO_SHUTDOWN_GRACE_S": str(PATIENCE_S)}
    with stdio_server_process(tmp_path, env) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        async with incidents_locked(url) as watcher:
            send(process.stdin, search(2, "oracle"))
            await wait_for_blocked_reader(watcher)
            process.send_signal(signal.SIGTERM)
            await wait_for_log(tmp_path, "Stopping (SIGTERM): no new requests")
            send(process.stdin, search(3, "flash loan"))  # stdin is open, but no longer read
            assert process.poll() is None  # the call in flight holds the stop
        # The lock is gone: the call finishes, and the server stops with stdin still open.
        answered = await asyncio.to_thread(answers, process.stdout)
        assert await asyncio.to_thread(process.wait, PATIENCE_S) == 0
    assert answered[2]["result"]["isError"] is False, answered[2]
    assert 3 not in answered
    assert await usage_statuses(url) == ["ok"]  # metered on the way out; 3 never ran
    assert "Traceback" not in (tmp_path / "server.log").read_text()


async def test_sigterm_past_the_deadline_cuts_the_call_and_exits_1(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    url = await postgres_databases.create()
    env = {"KAMIYO_DATABASE_URL": url, "KAMIYO_SHUTDOWN_GRACE_S": "1"}
    with stdio_server_process(tmp_path, env) as process:
        assert process.stdin is not None
        async with incidents_locked(url) as watcher:
            send(process.stdin, search(2, "oracle"))
            await wait_for_blocked_reader(watcher)
            process.send_signal(signal.SIGTERM)
            # The lock outlives the deadline: the server gives up on the call and exits.
            assert await asyncio.to_thread(process.wait, PATIENCE_S) == 1
    log = (tmp_path / "server.log").read_text()
    assert "cancelling 1 call(s) still running" in log
    assert await usage_statuses(url) == []  # the cut call was neither recorded nor charged


async def test_a_second_signal_cuts_the_call_at_once(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    url = await postgres_databases.create()
    env = {"KAMIYO_DATABASE_URL": url, "KAMIYO_SHUTDOWN_GRACE_S": str(PATIENCE_S * 10)}
    with stdio_server_process(tmp_path, env) as process:
        assert process.stdin is not None
        async with incidents_locked(url) as watcher:
            send(process.stdin, search(2, "oracle"))
            await wait_for_blocked_reader(watcher)
            process.send_signal(signal.SIGTERM)
            await wait_for_log(tmp_path, "Stopping (SIGTERM): no new requests")
            process.send_signal(signal.SIGINT)  # Ctrl-C: do not wait out the grace
            # Within PATIENCE_S, a tenth of the grace: only the second signal can end it.
            assert await asyncio.to_thread(process.wait, PATIENCE_S) == 1
    log = (tmp_path / "server.log").read_text()
    assert "A second signal: cancelling 1 call(s) still running" in log
    assert await usage_statuses(url) == []


async def test_a_last_usage_write_that_cannot_finish_does_not_hold_the_exit(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    """The meter's last write waits on a lock the test holds on usage_records, as on a
    database that stopped answering: KAMIYO_SHUTDOWN_CLOSE_S cuts it, the log says what."""
    url = await postgres_databases.create()
    env = {
        "KAMIYO_DATABASE_URL": url,
        "KAMIYO_METER_FLUSH_S": "3600",  # only the last write, at the stop, would record it
        "KAMIYO_SHUTDOWN_CLOSE_S": "1",
    }
    with stdio_server_process(tmp_path, env) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        send(process.stdin, search(2, "flash loan"))
        assert json.loads(process.stdout.readline())["result"]["isError"] is False
        async with table_locked(url, "usage_records"):
            process.send_signal(signal.SIGTERM)
            status = await asyncio.to_thread(process.wait, PATIENCE_S)
    assert status == 0  # no call was cut; the usage that was, the log counts
    log = (tmp_path / "server.log").read_text()
    assert "the meter's last write did not finish within 1 s and was cut" in log
    assert "usage meter stopped with 1 unwritten events" in log
    assert await usage_statuses(url) == []
    assert "Traceback" not in log


def test_stdio_finishes_the_call_in_flight_at_eof_and_meters_it(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    messages = [INITIALIZE, INITIALIZED, search(2, "flash loan")]
    # Everything at once and then EOF: the call is still running when stdin closes.
    run = subprocess.run(
        [sys.executable, "-m", "kamiyo", "serve"],
        input="".join(json.dumps(m) + "\n" for m in messages).encode(),
        env=server_env(tmp_path) | {"KAMIYO_DATABASE_URL": url},
        cwd=tmp_path,
        capture_output=True,
        timeout=PATIENCE_S * 3,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    answered = {a["id"]: a for a in map(json.loads, run.stdout.decode().splitlines())}
    assert answered[2].get("result", {}).get("isError") is False, answered[2]
    assert b"Traceback" not in run.stderr
    recorded = asyncio.run(
        count_rows(url, "SELECT count(*) FROM usage_records WHERE tool = 'search_exploits'")
    )
    assert recorded == 1

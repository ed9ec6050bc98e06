"""Limits and metering on real servers: two instances sharing Redis, and a stop under load."""

import os
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.mcpserver.conftest import STATELESS, http_server_process, issue_key, run_kamiyo
from tests.mcpserver.conftest import STATELESS_HEADERS as HEADERS

pytestmark = pytest.mark.anyio

SEARCH = {"name": "search_exploits", "arguments": {"query": "euler", "limit": 5}}


async def call_tool(client: httpx2.AsyncClient, url: str, key: str) -> dict[str, Any]:
    response = await client.post(
        f"{url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": SEARCH},
        headers=HEADERS | {"Authorization": f"Bearer {key}"},
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()["result"]
    return result


def usage_by_status(tmp_path: Path, tier: str) -> Counter[str]:
    with sqlite3.connect(tmp_path / "data" / "kamiyo.db") as db:
        rows = db.execute(
            "SELECT status FROM usage_records WHERE account_pk = "
            "(SELECT pk FROM accounts WHERE email = ?)",
            (f"{tier}-{os.getpid()}@example.com",),
        ).fetchall()
    return Counter(status for (status,) in rows)


def verify_usage(tmp_path: Path) -> str:
    proc = run_kamiyo(tmp_path, "usage", "verify", check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


async def test_two_servers_sharing_redis_admit_exactly_the_personal_limit(
    tmp_path: Path, redis_settings: dict[str, str]
) -> None:
    key = issue_key(tmp_path, "personal")
    env = {f"KAMIYO_REDIS_{name.upper()}": value for name, value in redis_settings.items()}
    results: list[dict[str, Any]] = []
    with (
        http_server_process(tmp_path, STATELESS, env, "a.log") as (first, _),
        http_server_process(tmp_path, STATELESS, env, "b.log") as (second, _),
    ):
        async with httpx2.AsyncClient(timeout=60) as client, anyio.create_task_group() as tg:

            async def one(url: str) -> None:
                results.append(await call_tool(client, url, key))

            for i in range(80):
                tg.start_soon(one, first if i % 2 else second)

    answered = [r for r in results if not r.get("isError")]
    refused = [r for r in results if r.get("isError")]
    assert len(answered) == 30  # Personal: 30 requests per minute, across both instances
    for refusal in refused:
        details = refusal["structuredContent"]
        assert details["error"] == "rate_limited"
        assert details["limit"] == "requests_per_minute"
        assert 1 <= details["retry_after_seconds"] <= 60
        assert f"Retry in {details['retry_after_seconds']} s" in refusal["content"][0]["text"]
    # Both servers stopped (SIGTERM) and wrote what they metered into one chain per account.
    assert usage_by_status(tmp_path, "personal") == {"ok": 30, "rate_limited": 50}
    assert "all verify" in verify_usage(tmp_path)


async def test_after_sigterm_under_load_every_answered_call_is_metered(tmp_path: Path) -> None:
    key = issue_key(tmp_path, "enterprise")
    answered = 0
    loaded = anyio.Event()
    with http_server_process(tmp_path, STATELESS) as (url, process):
        async with httpx2.AsyncClient(timeout=60) as client:

            async def worker() -> None:
                nonlocal answered
                while True:
                    try:
                        await call_tool(client, url, key)
                    except httpx2.TransportError:  # the server has stopped listening
                        return
                    answered += 1
                    if answered == 150:
                        loaded.set()

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(worker)
                await loaded.wait()  # under load, then stop it
                process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then exits by the signal it caught.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    metered = usage_by_status(tmp_path, "enterprise")
    assert metered.total() == answered
    assert set(metered) == {"ok"}

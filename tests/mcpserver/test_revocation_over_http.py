"""Revocation on real servers: two ``kamiyo serve`` processes, changes made by the operator
commands in a third process, refused on the very next call on each server.

The servers remember identities for an hour (``KAMIYO_TIER_CACHE_S``), so only the credentials
version (access/revocation.py) can make them notice; each server is called twice beforehand so
the key is in its cache.
"""

import os
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import PostgresDatabases
from tests.mcpserver.conftest import STATELESS, http_server_process, run_kamiyo
from tests.mcpserver.conftest import STATELESS_HEADERS as HEADERS

pytestmark = pytest.mark.anyio

SEARCH = {"name": "search_exploits", "arguments": {"query": "euler", "limit": 1}}


async def call(client: httpx2.AsyncClient, url: str, key: str) -> str:
    """ "ok", or the 401's error description."""
    response = await client.post(
        f"{url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": SEARCH},
        headers=HEADERS | {"Authorization": f"Bearer {key}"},
    )
    if response.status_code == 401:
        challenge = response.headers["www-authenticate"]
        return challenge.split('error_description="', 1)[1].split('"', 1)[0]
    response.raise_for_status()
    result: dict[str, Any] = response.json()["result"]
    assert not result.get("isError"), result
    return "ok"


# Without Redis, the database read is the same code on both backends (tests/access covers it
# on PostgreSQL); two processes on one SQLite file are the default set-up's case.
@pytest.fixture(params=["postgresql+redis", "sqlite"])
async def shared_env(
    request: pytest.FixtureRequest, postgres_databases: PostgresDatabases
) -> dict[str, str]:
    """What the two servers and the commands share: a database, and Redis or not."""
    env = {"KAMIYO_TIER_CACHE_S": "3600"}
    if request.param.startswith("postgresql"):
        env["KAMIYO_DATABASE_URL"] = await postgres_databases.create()
    if request.param.endswith("redis"):
        redis = request.getfixturevalue("redis_settings")
        env |= {
            "KAMIYO_REDIS_URL": redis["url"],
            "KAMIYO_REDIS_PREFIX": redis["prefix"],
        }
    return env  # sqlite: the default file in the shared data folder


async def test_revoking_disabling_and_enabling_apply_on_the_next_call_on_both_servers(
    tmp_path: Path, shared_env: dict[str, str]
) -> None:
    def kamiyo(*args: str) -> str:
        done = run_kamiyo(tmp_path, *args, env=shared_env, check=False)
        assert done.returncode == 0, done.stderr
        assert "warning" not in done.stderr  # Redis was told, where there is one
        return done.stdout.strip()

    email = f"ops-{os.getpid()}@example.com"
    kamiyo("accounts", "create", email, "--tier", "enterprise")
    doomed, kept = kamiyo("keys", "create", email), kamiyo("keys", "create", email)
    delays: dict[str, float] = {}
    with (
        http_server_process(tmp_path, STATELESS, shared_env, "a.log") as (first, _),
        http_server_process(tmp_path, STATELESS, shared_env, "b.log") as (second, _),
    ):
        servers = {"a": first, "b": second}
        async with httpx2.AsyncClient(timeout=60) as client:
            for url in servers.values():
                for _ in range(2):  # the second call is answered from the server's cache
                    assert await call(client, url, doomed) == "ok"
                    assert await call(client, url, kept) == "ok"

            kamiyo("keys", "revoke", doomed[:17])
            for name, url in servers.items():  # the first call after the command returned
                started = time.perf_counter()
                assert await call(client, url, doomed) == "Unknown or revoked API key."
                delays[f"refused call on {name}"] = time.perf_counter() - started
                assert await call(client, url, kept) == "ok"

            kamiyo("accounts", "disable", email)
            for url in servers.values():
                assert await call(client, url, kept) == (
                    "This account is disabled; contact the operator."
                )
            kamiyo("accounts", "enable", email)
            for url in servers.values():
                assert await call(client, url, kept) == "ok"
    # How long that refused call took (its look-up included), for the record; never asserted.
    print({name: f"{seconds * 1000:.1f} ms" for name, seconds in delays.items()})

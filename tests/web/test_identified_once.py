"""An HTTP call's credential is identified once: by the bearer guard, whose identity the call
then uses, rather than again when the gate admits it.

Each identification asks whether the account's credentials version moved (on PostgreSQL
without Redis, a statement), so that statement is counted per call, on MCP and on REST.
"""

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from kamiyo.access import accounts, keys
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.tiers import Tier
from kamiyo.web.app import create_app
from tests.web.raw_http import MCP_HEADERS

pytestmark = pytest.mark.anyio

SEARCH = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "search_exploits", "arguments": {"query": "euler", "limit": 1}},
}
VERSION_READ = "SELECT accounts.credentials_version FROM accounts"


@pytest.fixture
def statements() -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()

    def count(*args: Any) -> None:
        seen[" ".join(args[2].split())[: len(VERSION_READ)]] += 1

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def _key(runtime: Runtime) -> str:
    async with runtime.sessions() as session:
        email = f"once-{uuid.uuid4().hex[:8]}@example.com"  # a database the session shares
        account = await accounts.create_account(session, email, Tier.TEAM)
        key = (await keys.create_key(session, account, "once")).key
        await session.commit()
    return key


# PostgreSQL only: on SQLite the gate reads the version only after a commit to the file.
@pytest.mark.parametrize("loaded_runtime", ["postgresql"], indirect=True)
async def test_a_call_reads_its_credentials_version_once(
    loaded_runtime: Runtime, statements: Counter[str]
) -> None:
    app = create_app(loaded_runtime.settings, build_server, stateless=True, json_response=True)
    async with app.router.lifespan_context(app):
        auth = {"Authorization": f"Bearer {await _key(loaded_runtime)}"}
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000"
        ) as http:
            first = await http.post("/mcp", json=SEARCH, headers=MCP_HEADERS | auth)
            assert first.status_code == 200, first.text  # the key looked up, and remembered
            reads = []
            for _ in range(3):
                before = statements[VERSION_READ]
                answered = await http.post("/mcp", json=SEARCH, headers=MCP_HEADERS | auth)
                assert answered.json()["result"].get("isError") is not True, answered.text
                rest = await http.get("/api/v1/exploits", params={"limit": 1}, headers=auth)
                assert rest.status_code == 200, rest.text
                reads.append(statements[VERSION_READ] - before)
    assert reads == [2, 2, 2]  # one for the MCP call, one for the REST call (before: 4)

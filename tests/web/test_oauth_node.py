"""A client we did not write: the official TypeScript SDK's OAuth client provider completes the
flow against KAMIYO on loopback (the consent step scripted), calls a tool, and refreshes."""

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import uvicorn

from kamiyo.access import accounts, keys
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver.server import build_server
from kamiyo.tiers import Tier
from kamiyo.web.app import create_app
from tests.mcpserver.conftest import free_port
from tests.mcpserver.node_clients import NODE_DIR, NODE_TIMEOUT_S, node_binary
from tests.web.oauth_helpers import oauth_settings

pytestmark = pytest.mark.anyio

SCRIPT = NODE_DIR / "oauth_client.mjs"


@dataclass
class Served:
    url: str
    key: str


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    node_binary()  # skips (with the reason) before anything starts when Node is missing
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    database = f"sqlite+aiosqlite:///{tmp_path / 'oauth-node.db'}"
    settings = oauth_settings(database).with_changes(site={"public_url": url})
    app = create_app(settings, build_server)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve)
        with anyio.fail_after(30):
            while not server.started:  # noqa: ASYNC110 (uvicorn sets it when listening)
                await anyio.sleep(0.02)
        engine = create_engine(database)
        try:
            async with session_factory(engine)() as session:
                account = await accounts.create_account(session, "node@example.com", Tier.TEAM)
                key = (await keys.create_key(session, account, "node")).key
                await session.commit()
        finally:
            await engine.dispose()
        try:
            yield Served(url, key)
        finally:
            server.should_exit = True


async def test_the_typescript_sdk_completes_the_flow(served: Served) -> None:
    node = node_binary()
    env = {"PATH": f"{Path(node).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with anyio.fail_after(NODE_TIMEOUT_S):
        done = await anyio.run_process(
            [node, str(SCRIPT), served.url],
            env=env | {"KAMIYO_API_KEY": served.key},
            cwd=NODE_DIR,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = json.loads(done.stdout)
    assert seen["tier"] == "team"
    assert seen["tier_after_refresh"] == "team"
    assert seen["refreshed"] is True
    assert seen["client_id"]  # registered

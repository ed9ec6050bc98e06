from collections.abc import AsyncIterator

import pytest
from mcp import Client

from kamiyo.mcpserver.calls import ServerState
from kamiyo.mcpserver.server import build_server, default_gate
from kamiyo.runtime import Runtime


@pytest.fixture
async def client(loaded_runtime: Runtime) -> AsyncIterator[Client]:
    """The SDK's in-memory client on a server over the loaded store (each backend)."""
    settings = loaded_runtime.settings
    state = ServerState(settings=settings, gate=default_gate(settings), runtime=loaded_runtime)
    async with Client(build_server(state)) as client:
        yield client

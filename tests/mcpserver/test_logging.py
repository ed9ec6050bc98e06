"""Log notifications: a line per tool call, to a session that asked, at the level it asked."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import LoggingLevel, LoggingMessageNotificationParams

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import OpenGate
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from tests.mcpserver.conftest import running_http_server

pytestmark = pytest.mark.anyio

Lines = list[LoggingMessageNotificationParams]
Connect = Callable[..., AbstractAsyncContextManager[tuple[Client, Lines]]]


@pytest.fixture
def connect(loaded_runtime: Runtime) -> Connect:
    """A client on a server behind the open gate (or the account gate: anonymous, the free
    tier), and the log lines it receives."""

    @asynccontextmanager
    async def connected(
        mode: str = "legacy", *, accounts: bool = False, **client: Any
    ) -> AsyncIterator[tuple[Client, Lines]]:
        settings = loaded_runtime.settings
        gate = AccountGate(settings) if accounts else OpenGate(settings.answers.max_results)
        state = ServerState(settings=settings, gate=gate, runtime=loaded_runtime)
        lines: Lines = []

        async def heard(params: LoggingMessageNotificationParams) -> None:
            lines.append(params)

        async with (
            gate.serving(loaded_runtime.sessions),
            Client(build_server(state), mode=mode, logging_callback=heard, **client) as c,
        ):
            yield c, lines

    return connected


async def _set_level(client: Client, level: LoggingLevel) -> None:
    with pytest.warns(MCPDeprecationWarning):  # the SDK says so; 2025-11-25 clients still ask
        await client.set_logging_level(level)


async def test_the_server_declares_logging(connect: Connect) -> None:
    async with connect() as (client, _):
        assert client.server_capabilities.logging is not None


async def test_after_set_level_each_tool_call_is_one_line(connect: Connect) -> None:
    async with connect() as (client, lines):
        await _set_level(client, "info")
        await client.call_tool("search_exploits", {"query": "euler"})
        await client.call_tool("get_exploit", {"exploit_id": "19990101_nothing"})
    assert [(line.level, line.logger) for line in lines] == [("info", "kamiyo")] * 2
    answered, missing = (line.data for line in lines)
    assert (answered["tool"], answered["status"]) == ("search_exploits", "ok")
    assert 0 < answered["duration_ms"] < 60_000
    assert "message" not in answered
    assert (missing["tool"], missing["status"]) == ("get_exploit", "not_found")
    assert "No incident with id '19990101_nothing'" in missing["message"]


async def test_no_line_without_set_level(connect: Connect) -> None:
    async with connect() as (client, lines):
        result = await client.call_tool("search_exploits", {"query": "euler"})
    assert result.is_error is not True
    assert lines == []


async def test_a_higher_level_hears_refusals_only(connect: Connect) -> None:
    async with connect(accounts=True) as (client, lines):
        await _set_level(client, "warning")
        answered = await client.call_tool("search_exploits", {"query": "euler"})
        locked = await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
    assert answered.is_error is not True
    assert locked.is_error is True
    assert len(lines) == 1
    assert lines[0].level == "warning"
    assert (lines[0].data["tool"], lines[0].data["status"]) == ("assess_protocol_risk", "forbidden")
    assert "needs the personal tier" in lines[0].data["message"]


async def test_error_level_hears_nothing_of_a_refusal(connect: Connect) -> None:
    async with connect(accounts=True) as (client, lines):
        await _set_level(client, "error")
        await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
    assert lines == []


async def test_the_level_is_the_sessions_own(connect: Connect) -> None:
    async with connect() as (asking, asked), connect() as (other, unasked):
        await _set_level(asking, "info")
        await other.call_tool("search_exploits", {"query": "euler"})
        await asking.call_tool("search_exploits", {"query": "euler"})
    assert len(asked) == 1
    assert unasked == []


async def test_2026_07_28_sends_only_to_a_request_that_opts_in(connect: Connect) -> None:
    """2026-07-28 removed logging/setLevel: a request asks in its _meta, or hears nothing."""
    async with connect("2026-07-28") as (client, lines):
        await client.call_tool("search_exploits", {"query": "euler"})
    assert lines == []
    async with connect("2026-07-28", log_level="info") as (client, lines):
        await client.call_tool("search_exploits", {"query": "euler"})
    assert [(line.level, line.data["status"]) for line in lines] == [("info", "ok")]


@pytest.mark.parametrize(("mode", "opt_in"), [("legacy", None), ("2026-07-28", "info")])
async def test_over_streamable_http(tmp_path: Path, mode: str, opt_in: LoggingLevel | None) -> None:
    """A session on a real server: its line rides the tool call's own response stream."""
    lines: Lines = []

    async def heard(params: LoggingMessageNotificationParams) -> None:
        lines.append(params)

    with running_http_server(tmp_path, []) as url:
        async with Client(
            f"{url}/mcp", mode=mode, logging_callback=heard, log_level=opt_in
        ) as client:
            if opt_in is None:
                await _set_level(client, "info")
            await client.call_tool("search_exploits", {"query": "ronin"})
    assert [(line.level, line.data["tool"], line.data["status"]) for line in lines] == [
        ("info", "search_exploits", "ok")
    ]

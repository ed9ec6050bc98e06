"""The MCP Inspector's CLI as a person runs it against a server that wants OAuth: it registers
itself, prints the authorization URL (and tries to open a browser), waits on its loopback
callback for the code, exchanges it and makes its call.

Its state (the OAuth state file, the catalog, the client config) lives in the test's folder,
its secrets in memory only. Without a TTY it runs OAuth only with ``MCP_AUTO_OPEN_ENABLED=true``,
which also makes it open the URL: through the ``open`` package's own ``xdg-open``, which takes
``$BROWSER``, or the system's ``xdg-open`` on PATH. Both are a script that only writes the URL
down, and no display is named, so nothing is launched; the test opens the URL in its own
signed-in page instead.
"""

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.mcpserver.conftest import free_port
from tests.mcpserver.node_clients import NODE_DIR, node_binary

# The real path: the CLI runs only when argv[1] is its own file, and tests/node/node_modules
# may be a link to another checkout's.
CLI = (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "inspector").resolve() / (
    "clients/cli/build/index.js"
)
PROMPT = re.compile(r"Please navigate to: (\S+)")
URL_TIMEOUT_S = 15  # discovery and registration, a few requests on loopback
RUN_TIMEOUT_S = 30  # after the browser answered: the code exchange, connect, one call
# What would reach a person's desktop session, and is not this test's.
DESKTOP = ("DISPLAY", "WAYLAND_DISPLAY", "XDG_CURRENT_DESKTOP", "DBUS_SESSION_BUS_ADDRESS")
OPENER = '#!/bin/sh\nprintf "%s\\n" "$*" >> "$(dirname "$0")/../opened.txt"\n'


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str

    def result(self) -> dict[str, Any]:
        """The tool's result, from the one JSON object ``--format json`` prints."""
        assert self.code == 0, (self.code, self.stderr[-3000:])
        answer: dict[str, Any] = json.loads(self.stdout)["result"]
        return answer

    def error(self) -> str:
        """The message of the error envelope the CLI writes on stderr when it fails."""
        assert self.code != 0, self.stdout
        envelope = next(line for line in self.stderr.splitlines() if line.startswith('{"error"'))
        return str(json.loads(envelope)["error"]["message"])


@dataclass
class Run:
    process: "subprocess.Popen[bytes]"
    folder: Path
    callback_url: str

    def authorization_url(self) -> str:
        """The URL the CLI asks the person to open, once it printed it."""
        deadline = time.monotonic() + URL_TIMEOUT_S
        while (found := PROMPT.search(self._read("stderr.txt"))) is None:
            if (code := self.process.poll()) is not None or time.monotonic() > deadline:
                # Exit 0 here: the server answered without asking for a credential.
                raise AssertionError(
                    f"no authorization URL (exit status {code}): "
                    f"{self._read('stderr.txt')[-2000:]} {self._read('stdout.txt')[:500]}"
                )
            time.sleep(0.05)
        return found[1]

    def finished(self) -> Finished:
        code = self.process.wait(timeout=RUN_TIMEOUT_S)
        return Finished(code, self._read("stdout.txt"), self._read("stderr.txt"))

    def opened(self) -> list[str]:
        """The URLs the CLI had the harmless opener open."""
        return self._read("opened.txt").splitlines()

    def _read(self, name: str) -> str:
        path = self.folder / name
        return path.read_text() if path.exists() else ""


@contextmanager
def inspector(mcp_url: str, folder: Path, tool: str, arguments: dict[str, Any]) -> Iterator[Run]:
    """The CLI calling ``tool`` on ``mcp_url`` with no credential, so through OAuth."""
    node = node_binary()
    (folder / "bin").mkdir(parents=True)
    for name in ("browser", "xdg-open"):
        (folder / "bin" / name).write_text(OPENER)
        (folder / "bin" / name).chmod(0o755)
    state = folder / "state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in DESKTOP and not k.startswith("MCP_")}
    env |= {
        "PATH": os.pathsep.join([str(folder / "bin"), str(Path(node).parent), env["PATH"]]),
        "BROWSER": str(folder / "bin" / "browser"),
        "HOME": str(folder),
        "NO_COLOR": "1",
        "MCP_AUTO_OPEN_ENABLED": "true",
        "MCP_STORAGE_DIR": str(state),
        "MCP_CATALOG_PATH": str(state / "mcp.json"),
        "MCP_CLIENT_CONFIG_PATH": str(state / "client.json"),
        "MCP_INSPECTOR_SECRET_STORE": "memory",
    }
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    command = [node, str(CLI), mcp_url, "--format", "json", "--callback-url", callback]
    command += ["--method", "tools/call", "--tool-name", tool]
    command += ["--tool-args-json", json.dumps(arguments)]
    with (folder / "stdout.txt").open("wb") as out, (folder / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            command, env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    try:
        yield Run(process, folder, callback)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcp import Client

from kamiyo.access.gate import OpenGate
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState


@pytest.fixture
async def client(loaded_runtime: Runtime) -> AsyncIterator[Client]:
    """The SDK's in-memory client on a server over the loaded store (each backend)."""
    settings = loaded_runtime.settings
    # The tools themselves, without tier limits (the gate has its own tests).
    state = ServerState(
        settings=settings, gate=OpenGate(settings.answers.max_results), runtime=loaded_runtime
    )
    async with Client(build_server(state)) as client:
        yield client


STARTUP_TIMEOUT_S = 60


def server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    return env | {"KAMIYO_DATA_DIR": str(tmp_path / "data"), "KAMIYO_LOG_FORMAT": "json"}


def free_port() -> int:
    """A loopback port nothing listens on now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)  # polling for readiness, not waiting out a fixed delay
    raise TimeoutError(f"{url} did not answer within {STARTUP_TIMEOUT_S} s")


@contextmanager
def running_http_server(
    tmp_path: Path,
    flags: list[str],
    env: Mapping[str, str] | None = None,
    log_name: str = "server.log",
) -> Iterator[str]:
    """``kamiyo serve --transport http`` in its own process; yields its base URL.

    ``env`` adds settings (KAMIYO_*) to the server's environment; servers started with the same
    ``tmp_path`` share its database, so give each its own ``log_name``.
    """
    with http_server_process(tmp_path, flags, env, log_name) as (url, _):
        yield url


@contextmanager
def http_server_process(
    tmp_path: Path,
    flags: list[str],
    env: Mapping[str, str] | None = None,
    log_name: str = "server.log",
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As ``running_http_server``, also yielding the process (to signal it)."""
    port = free_port()
    log_path = tmp_path / log_name
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kamiyo",
                "serve",
                "--transport",
                "http",
                "--port",
                str(port),
                *flags,
            ],
            env=server_env(tmp_path) | dict(env or {}),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=30)
    assert stdout == b""  # logs go to stderr, never stdout
    assert "Traceback" not in log_path.read_text()


@pytest.fixture(params=["stateful", "stateless-json"])
def http_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    flags = ["--stateless", "--json-response"] if request.param == "stateless-json" else []
    with running_http_server(tmp_path, flags) as url:
        yield url


def run_kamiyo(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``kamiyo ARGS`` in its own process, on the database of servers started on ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-m", "kamiyo", *args],
        env=server_env(tmp_path) | dict(env or {}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def issue_key(tmp_path: Path, tier: str = "enterprise") -> str:
    """An account and API key in the database a server started with ``server_env(tmp_path)``
    uses, made with the operator commands."""
    email = f"{tier}-{os.getpid()}@example.com"
    run_kamiyo(tmp_path, "accounts", "create", email, "--tier", tier)
    return run_kamiyo(tmp_path, "keys", "create", email).stdout.strip()

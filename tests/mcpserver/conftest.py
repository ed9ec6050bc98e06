import os
import random
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
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
# A server any instance can answer, and what a client sends it.
STATELESS = ["--stateless", "--json-response"]
STATELESS_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


def server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    return env | {"KAMIYO_DATA_DIR": str(tmp_path / "data"), "KAMIYO_LOG_FORMAT": "json"}


# Under pytest-xdist each worker hands out ports from a block of its own, below Linux's
# ephemeral range (32768-60999), where the system never puts an outgoing connection. So a port
# handed out cannot be taken by another worker's server, nor by a client socket, between the
# moment it is chosen and the moment the server binds it.
_WORKER_BLOCKS_START = 20_000
_WORKER_BLOCK_SIZE = 500
_worker_ports: Iterator[int] | None = None


def _worker_port_cycle(worker: str) -> Iterator[int]:
    index = int(worker.removeprefix("gw")) % 25  # 25 blocks of 500 end below 32768
    start = _WORKER_BLOCKS_START + index * _WORKER_BLOCK_SIZE
    # A random first port, so that two runs at once on one machine seldom walk in step.
    offset = random.randrange(_WORKER_BLOCK_SIZE)
    while True:
        for step in range(_WORKER_BLOCK_SIZE):
            yield start + (offset + step) % _WORKER_BLOCK_SIZE


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:  # in use, or lingering after a server that stopped
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on now (for servers the tests start)."""
    global _worker_ports
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    if _worker_ports is None:
        _worker_ports = _worker_port_cycle(worker)
    for _ in range(_WORKER_BLOCK_SIZE):
        port = next(_worker_ports)
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in xdist worker {worker}'s block")


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


def _limit_open_files(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before it runs Python
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextmanager
def http_server_process(
    tmp_path: Path,
    flags: list[str],
    env: Mapping[str, str] | None = None,
    log_name: str = "server.log",
    open_files: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As ``running_http_server``, also yielding the process (to signal it); ``open_files``
    sets the server's open-file limit (soft and hard, so it cannot raise it)."""
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
            preexec_fn=None if open_files is None else _limit_open_files(open_files),
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

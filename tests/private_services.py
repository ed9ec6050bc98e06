"""A PostgreSQL cluster and a redis-server of a test's own, to stop and start again by pid.

Tests that take a dependency down must not touch the shared servers other tests use, so these
start their own: PostgreSQL 15 (``initdb`` + ``postgres`` in a temporary folder, trust auth,
loopback only, no Unix socket) and ``redis-server`` (no persistence, so a restart comes back
with empty memory, as the finding describes). Each listens on a port from ``free_port``.
Where the binaries are missing the test is skipped with the reason (an error under CI).

PostgreSQL refuses to run as root; as root the cluster runs as the ``postgres`` user, in a
folder of its own under the system's temporary directory (pytest's ``tmp_path`` is private to
root).
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.mcpserver.conftest import free_port

POSTGRES_BIN = Path(os.environ.get("KAMIYO_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
READY_TIMEOUT_S = 60


def _missing(what: str) -> None:
    reason = f"{what} is not installed here"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _wait(ready: Any, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if ready():
            return
        time.sleep(0.05)  # polling for readiness, not waiting out a fixed delay
    raise TimeoutError(f"{what} was not ready within {READY_TIMEOUT_S} s")


class PrivatePostgres:
    """One cluster; ``stop`` kills it as a crash would (SIGQUIT: immediate shutdown)."""

    def __init__(self, folder: Path, port: int, user: str | None) -> None:
        self.folder = folder
        self.port = port
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            args, user=self.user, capture_output=True, timeout=READY_TIMEOUT_S, check=True
        )

    def start(self) -> None:
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(self.folder / "data"),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
            ],
            user=self.user,
            stdout=log,
            stderr=log,
        )
        log.close()
        isready = [str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        _wait(
            lambda: subprocess.run(isready, capture_output=True).returncode == 0,
            "postgres",
            self.process,
        )

    def stop(self) -> None:
        """Immediate shutdown by pid: connections are cut, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            self.process.wait(timeout=READY_TIMEOUT_S)
        self.process = None

    def create_database(self, name: str) -> str:
        self._run(str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)  # fmt: skip
        return self.url(name)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (POSTGRES_BIN / "initdb").exists():
        _missing(f"PostgreSQL ({POSTGRES_BIN}/initdb)")
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="kamiyo-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        cluster = PrivatePostgres(folder, free_port(), user)
        cluster._run(
            str(POSTGRES_BIN / "initdb"),
            "-D",
            str(folder / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class PrivateRedis:
    """One redis-server without persistence: a restart comes back with empty memory."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        ping = ["redis-cli", "-p", str(self.port), "ping"]
        _wait(
            lambda: subprocess.run(ping, capture_output=True).stdout.strip() == b"PONG",
            "redis-server",
            self.process,
        )

    def kill(self) -> None:
        """SIGKILL by pid: the server and everything it counted are gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=READY_TIMEOUT_S)
        self.process = None


@contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        _missing("redis-server")
    server = PrivateRedis(folder, free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()

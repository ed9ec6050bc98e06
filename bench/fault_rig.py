"""The services a fault run stops and the KAMIYO instances it loads: all processes of its own.

PostgreSQL and ``redis-server`` come from ``tests/private_services.py`` (free ports, stopped
and started by pid), never the machine's shared servers. Each instance is ``kamiyo serve
--transport http --stateless --json-response`` (any instance answers any request, as behind a
load balancer) with its stderr in a log file of its own, which the run reads afterwards for
tracebacks and payment lines.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import free_port, stop_process

READY_S = 120  # a loaded shared machine starts a server slowly; this is a bound, not a delay
SERVE_FLAGS = ("--stateless", "--json-response")


def base_env(folder: Path) -> dict[str, str]:
    """The caller's environment without any KAMIYO_* setting, plus the run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    return env | {
        "KAMIYO_DATA_DIR": str(folder / "data"),
        "KAMIYO_LOG_FORMAT": "json",
        "KAMIYO_LOG_LEVEL": "WARNING",  # INFO is a line per request; the run reads warnings
        "KAMIYO_ENVIRONMENT": "test",
    }


def kamiyo(env: Mapping[str, str], *args: str) -> str:
    """``kamiyo ARGS`` as an operator runs it; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "kamiyo", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kamiyo {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout.strip()


def enterprise_keys(env: Mapping[str, str], count: int) -> list[str]:
    """``count`` enterprise accounts with one API key each (500 calls a minute per account)."""
    found = []
    for n in range(count):
        email = f"faults-{n}@example.com"
        kamiyo(env, "accounts", "create", email, "--tier", "enterprise")
        found.append(kamiyo(env, "keys", "create", email))
    return found


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@dataclass
class Instance:
    """One ``kamiyo serve`` process; ``log`` is its stderr."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kamiyo",
                    "serve",
                    "--transport",
                    "http",
                    "--port",
                    str(self.port),
                    *SERVE_FLAGS,
                ],
                env=self.env,
                stdout=log,  # stdout must stay empty (it is the stdio transport's); checked
                stderr=log,
            )
        deadline = time.monotonic() + READY_S
        while not _healthy(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not answer /healthz in {READY_S} s")
            time.sleep(0.1)  # polling for readiness

    def kill(self) -> None:
        """SIGKILL: no shutdown, the meter's pending batch is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=READY_S)

    def stop(self) -> None:
        """SIGTERM: a clean stop, which flushes the meter."""
        if self.process is not None:
            stop_process(self.process, timeout=READY_S)

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")

    def warnings(self) -> Counter[str]:
        """The log's warning and error lines, digits folded so repeats count as one."""
        found: Counter[str] = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                if not line.startswith("KAMIYO MCP on "):  # the banner
                    found[f"(not JSON) {line[:100]}"] += 1
                continue
            if isinstance(record, dict) and record.get("level") in ("WARNING", "ERROR"):
                message = re.sub(r"\d+(\.\d+)?", "N", str(record.get("message")))[:140]
                found[f"{record['level']} {record.get('logger')}: {message}"] += 1
        return found


def start_instances(env: dict[str, str], folder: Path, count: int = 2) -> list[Instance]:
    instances = [Instance(f"i{n + 1}", env, folder / f"i{n + 1}.log") for n in range(count)]
    for instance in instances:
        instance.start()
    return instances

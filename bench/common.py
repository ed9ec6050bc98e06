"""Helpers the benchmarks share: ports, file limits, waiting, stopping, Redis keys, results."""

import json
import resource
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).parent
RESULTS = HERE / "results"
PROTOCOL = "2025-11-25"


def initialize(client: str, request_id: int = 1) -> dict[str, Any]:
    """An MCP ``initialize`` request from a client named ``client``."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": client, "version": "1"},
        },
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_open_files() -> int:
    """Raise this process's soft open-file limit to its hard limit (thousands of sockets are
    the point of these benchmarks); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1_048_576 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    return soft


def wait_http(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 90
) -> None:
    """Poll ``url`` until it answers 200 (or ``process`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500:  # it answers (a path that only takes POST, say)
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} never answered")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM (a server then writes its meter's last batch), SIGKILL past ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def drop_prefix(url: str, prefix: str) -> int:
    """Delete the keys a run left under ``prefix`` in Redis; returns how many there were."""
    client = redis.Redis.from_url(url)
    try:
        found = list(client.scan_iter(match=f"{prefix}:*"))
        if found:
            client.delete(*found)
        return len(found)
    finally:
        client.close()


def results_file(name: str, report: dict[str, Any], table: str) -> Path:
    """Write the report (JSON) and its table (text) under bench/results/; the JSON's path."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / f"{name}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".txt").write_text(table + "\n")
    return out

"""Log amplification: what one hostile request costs a server, in each log format.

    python -m bench.log_amplification                  # 4,000,000-character values
    python -m bench.log_amplification --size 200000 --formats pretty

Starts ``kamiyo serve --transport http --stateless --json-response`` once per log format
(``KAMIYO_LOG_FORMAT``), its stderr to a file, and for each case POSTs one ``/mcp`` request
carrying a ``--size``-character name, URI or argument, while a thread polls ``/healthz``. It
reports the time to answer, the answer's size, the bytes the server wrote to stderr in the
meantime (a few of them are the /healthz polls' access lines) and the slowest /healthz. Before
the bounds (issue 11), a 4 MB ``resources/read`` took 8-10 s to answer in the pretty format,
stalled /healthz as long, and wrote 8-10 MB of log.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


def cases(value: str) -> dict[str, dict[str, Any]]:
    def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}

    return {
        "resources/read unknown uri": call("resources/read", {"uri": "kamiyo://" + value}),
        "resources/read exploit uri": call("resources/read", {"uri": "kamiyo://exploits/" + value}),
        "tools/call name": call("tools/call", {"name": value, "arguments": {}}),
        "tools/call argument": call(
            "tools/call", {"name": "get_exploit", "arguments": {"exploit_id": value}}
        ),
        "prompts/get name": call("prompts/get", {"name": value}),
        "prompts/get argument": call(
            "prompts/get", {"name": "incident_brief", "arguments": {"exploit_id": value}}
        ),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 60) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()


def _wait_until_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _get(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def _post(url: str, body: bytes) -> tuple[int, int]:
    request = urllib.request.Request(url, body, HEADERS, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, len(response.read())


def _poll(url: str, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        _get(url)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.02)


def measure(fmt: str, size: int) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="kamiyo-bench-logs-"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = folder / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    env |= {"KAMIYO_DATA_DIR": str(folder / "data"), "KAMIYO_LOG_FORMAT": fmt}
    command = [sys.executable, "-m", "kamiyo", "serve", "--transport", "http"]
    command += ["--port", str(port), "--stateless", "--json-response"]
    rows = []
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=log
        )
    try:
        _wait_until_healthy(base + "/healthz")
        for name, message in cases("x" * size).items():
            body = json.dumps(message).encode()
            time.sleep(0.5)  # let the previous case's lines reach the file
            before = log_path.stat().st_size
            stop, latencies = threading.Event(), list[float]()
            poller = threading.Thread(target=_poll, args=(base + "/healthz", stop, latencies))
            poller.start()
            time.sleep(0.2)
            started = time.perf_counter()
            status, answer_bytes = _post(base + "/mcp", body)
            took = time.perf_counter() - started
            stop.set()
            poller.join()
            time.sleep(0.5)
            rows.append(
                {
                    "format": fmt,
                    "case": name,
                    "status": status,
                    "answer_s": round(took, 3),
                    "answer_bytes": answer_bytes,
                    "stderr_bytes": log_path.stat().st_size - before,
                    "healthz_max_s": round(max(latencies), 3),
                    "healthz_polls": len(latencies),
                }
            )
    finally:
        server.terminate()
        server.wait(30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4_000_000, help="characters per value")
    parser.add_argument("--formats", nargs="+", default=["json", "pretty"])
    args = parser.parse_args()
    rows = [row for fmt in args.formats for row in measure(fmt, args.size)]
    columns = ("answer s", 9), ("answer B", 10), ("stderr B", 11), ("healthz max s", 14)
    print(f"{'format':7}{'case':29}" + "".join(f"{title:>{width}}" for title, width in columns))
    for row in rows:
        print(
            f"{row['format']:7}{row['case']:29}{row['answer_s']:9.2f}{row['answer_bytes']:10,}"
            f"{row['stderr_bytes']:11,}{row['healthz_max_s']:14.3f}"
        )
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"log-amplification-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"size": args.size, "rows": rows}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()

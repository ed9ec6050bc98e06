"""MCP serving speed: KAMIYO's search_exploits against a bare SDK echo tool, in the same run.

    python -m bench.mcp                 # HTTP throughput (autocannon) and stdio latency
    python -m bench.mcp --rounds 5 --duration 15

HTTP: both servers run stateless JSON Streamable HTTP under uvicorn, one at a time, and
autocannon (``bench/node``, installed with ``npm ci --prefix bench/node``) posts ``tools/call``
for ``--duration`` seconds with ``--connections`` connections; rounds alternate the two servers
and the report gives medians. stdio: the SDK's client calls each tool ``--calls`` times in turn.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from mcp import Client, StdioServerParameters

HERE = Path(__file__).parent
AUTOCANNON = HERE / "node" / "node_modules" / ".bin" / "autocannon"
SEARCH = {"name": "search_exploits", "arguments": {"query": "euler", "limit": 10}}
ECHO = {"name": "echo", "arguments": {"text": "euler"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], env: dict[str, str], ready_url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "ping"}).encode()
            request = urllib.request.Request(ready_url, data=body, headers=HEADERS, method="POST")
            with urllib.request.urlopen(request, timeout=2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"{ready_url} never answered")


HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


def autocannon(url: str, call: Mapping[str, object], duration: int, connections: int) -> float:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
    args = [
        str(AUTOCANNON),
        "-j",
        "-c",
        str(connections),
        "-d",
        str(duration),
        "-m",
        "POST",
        "-b",
        body,
    ]
    for name, value in HEADERS.items():
        args += ["-H", f"{name}={value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    if report["non2xx"] or report["errors"]:
        raise RuntimeError(f"{url}: {report['non2xx']} non-2xx, {report['errors']} errors")
    return float(report["requests"]["average"])


def http_throughput(
    rounds: int, duration: int, connections: int, env: dict[str, str]
) -> dict[str, object]:
    """Calls per second of the echo tool, and of search_exploits with and without the cache.

    autocannon repeats one request, so with the cache on every call after the first is a cache
    hit; with it off (KAMIYO_CACHE_TTL_S=0) every call runs the query.
    """
    kamiyo = [sys.executable, "-m", "kamiyo", "serve", "--transport", "http", "--stateless",
              "--json-response"]  # fmt: skip
    echo = [sys.executable, "-m", "bench.echo_server", "--transport", "http"]
    servers: list[tuple[str, list[str], Mapping[str, object], dict[str, str]]] = [
        ("echo", echo, ECHO, {}),
        ("kamiyo_cached", kamiyo, SEARCH, {}),
        ("kamiyo_uncached", kamiyo, SEARCH, {"KAMIYO_CACHE_TTL_S": "0"}),
    ]
    runs: dict[str, list[float]] = {name: [] for name, *_ in servers}
    for _ in range(rounds):
        for name, command, call, extra_env in servers:
            port = free_port()
            url = f"http://127.0.0.1:{port}/mcp"
            process = start([*command, "--port", str(port)], env | extra_env, url)
            try:
                runs[name].append(autocannon(url, call, duration, connections))
            finally:
                process.terminate()
                process.wait(timeout=30)
            print(f"  {name}: {runs[name][-1]:.0f} calls/s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "calls_per_s": medians,
        "ratio_cached": medians["kamiyo_cached"] / medians["echo"],
        "ratio_uncached": medians["kamiyo_uncached"] / medians["echo"],
        "runs": runs,
    }


async def stdio_latency(calls: int, env: dict[str, str]) -> dict[str, object]:
    results: dict[str, object] = {}
    for name, args, call in (
        ("echo", ["-m", "bench.echo_server"], ECHO),
        ("kamiyo", ["-m", "kamiyo", "serve"], SEARCH),
    ):
        params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=os.getcwd())
        async with Client(params, mode="legacy") as client:
            for _ in range(20):
                await client.call_tool(str(call["name"]), call["arguments"])  # type: ignore[arg-type]
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                await client.call_tool(str(call["name"]), call["arguments"])  # type: ignore[arg-type]
                samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        results[name] = {
            "p50_ms": samples[len(samples) // 2],
            "p99_ms": samples[int(len(samples) * 0.99)],
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per HTTP run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--calls", type=int, default=500, help="stdio calls per server")
    args = parser.parse_args()
    if not AUTOCANNON.exists() or shutil.which("node") is None:
        sys.exit(f"autocannon is missing: run `npm ci --prefix {HERE / 'node'}`")
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
        env |= {"KAMIYO_DATA_DIR": data, "KAMIYO_LOG_LEVEL": "WARNING"}
        # Prepare the database once so no run pays for the first load.
        subprocess.run(
            [sys.executable, "-m", "kamiyo", "db", "upgrade"],
            env=env,
            check=True,
            capture_output=True,
        )
        report = {
            "http": http_throughput(args.rounds, args.duration, args.connections, env),
            "stdio": asyncio.run(stdio_latency(args.calls, env)),
        }
    print(json.dumps(report, indent=2))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"mcp-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"args": vars(args), **report}, indent=2))


if __name__ == "__main__":
    main()

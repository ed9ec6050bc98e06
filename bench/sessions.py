"""Concurrent stateful Streamable HTTP sessions: how many one instance holds, and at what RSS.

    python -m bench.sessions                       # 5,000 sessions, both modes, RSS table
    python -m bench.sessions --sessions 2000 --modes init
    python -m bench.sessions --profile 1000        # tracemalloc: what one session allocates

One ``kamiyo serve --transport http`` (stateful, SSE answers, SQLite in a temporary folder) per
mode, started through this script's ``serve`` launcher, which raises its open-file limit and
then runs the CLI exactly as an operator would (``kamiyo serve``). Modes:

- ``init``: each session is opened (``initialize``, then ``notifications/initialized``) and left.
- ``stream``: the same, then the client opens the session's ``GET /mcp`` event stream and keeps
  it open, as the SDK's client does.

The client is asyncio on raw sockets (no HTTP library in the way): it opens ``--batch``
sessions at a time and keeps each stream's socket open without reading (the server's pings are
a few bytes per 15 s, well within the socket buffer). The server's caps are raised for the run
(``KAMIYO_HTTP_MAX_*``: every session comes from 127.0.0.1, one address), anonymous streams
are allowed an hour, and RSS (``VmRSS``) is read from ``/proc`` when idle (after one session,
so lazily built parts are counted in the idle figure) and after every ``--step`` sessions.

``--profile N``: the server (only under this script's ``KAMIYO_BENCH_TRACEMALLOC``, never in
product code) starts ``tracemalloc`` (``FRAMES`` frames) at its first SIGUSR1 and writes a
snapshot at each; the script takes one when idle and one after N ``stream`` sessions and reports
what was allocated in between and is still held, per session, by the package that allocated
it (an allocation made while KAMIYO code is on the stack counts as KAMIYO's).
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    INITIALIZED,
    PROTOCOL,
    free_port,
    initialize,
    raise_open_files,
    results_file,
    stop_process,
    wait_http,
)

SNAPSHOT_ENV = "KAMIYO_BENCH_TRACEMALLOC"
MB = 1024 * 1024
FRAMES = 12  # enough to find KAMIYO code above the SDK's; more makes start-up crawl


# The server side: the launcher (a child process).


def serve(port: int) -> None:
    """``kamiyo serve --transport http --port PORT``, with the open-file limit raised and, under
    ``KAMIYO_BENCH_TRACEMALLOC=PATH``, tracemalloc on and a snapshot to PATH.N on SIGUSR1."""
    raise_open_files()
    snapshot_path = os.environ.pop(SNAPSHOT_ENV, "")
    if snapshot_path:
        taken = Counter[str]()

        def dump(signum: int, frame: object) -> None:
            # Tracing starts at the first signal, once the server is up: traced from process
            # start, the imports alone took the loaded machine over ten minutes.
            if not tracemalloc.is_tracing():
                tracemalloc.start(FRAMES)
            taken["n"] += 1
            target = Path(f"{snapshot_path}.{taken['n']}")
            tracemalloc.take_snapshot().dump(str(target.with_suffix(".tmp")))
            target.with_suffix(".tmp").rename(target)  # the bench waits for this name

        signal.signal(signal.SIGUSR1, dump)
    from kamiyo.cli import main

    sys.argv = ["kamiyo", "serve", "--transport", "http", "--port", str(port)]
    main()


# The client side: raw HTTP/1.1 on asyncio sockets.


def request(method: str, port: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} /mcp HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
    return status, {name.strip().lower(): value.strip() for name, value in fields.items()}


async def post(
    port: int, headers: dict[str, str], message: dict[str, Any]
) -> tuple[int, dict[str, str]]:
    """One POST on its own connection (``Connection: close``): the status and the headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request("POST", port, headers, json.dumps(message).encode()))
        await writer.drain()
        raw = await reader.read(-1)  # to EOF: the server closes after answering
    finally:
        writer.close()
    return parse_head(raw)


async def open_session(port: int, stream: bool, held: list[asyncio.StreamWriter]) -> None:
    base = {"Accept": "application/json, text/event-stream", "Connection": "close"}
    status, headers = await post(port, base, initialize("bench-sessions"))
    if status != 200 or "mcp-session-id" not in headers:
        raise RuntimeError(f"initialize answered {status}")
    session = {"Mcp-Session-Id": headers["mcp-session-id"], "MCP-Protocol-Version": PROTOCOL}
    status, _ = await post(port, base | session, INITIALIZED)
    if status != 202:
        raise RuntimeError(f"notifications/initialized answered {status}")
    if not stream:
        return
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("GET", port, {"Accept": "text/event-stream"} | session))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status, _ = parse_head(head)
    if status != 200:
        writer.close()
        raise RuntimeError(f"GET /mcp answered {status}")
    held.append(writer)  # left open, unread


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Server:
    """One launcher process with its temporary data folder."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.data = data
        command = [sys.executable, "-m", "bench.sessions", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{self.port}/healthz", self.process, timeout=180)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process)


def server_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
    return env | {
        "KAMIYO_DATA_DIR": str(data),
        "KAMIYO_LOG_LEVEL": "WARNING",
        # One client address opens every session: lift the per-address and total caps (the
        # open-file limit still bounds them) and let anonymous streams stay for the run.
        "KAMIYO_HTTP_MAX_CONNECTIONS": "100000",
        "KAMIYO_HTTP_MAX_CONNECTIONS_PER_CLIENT": "100000",
        "KAMIYO_HTTP_MAX_STREAMS": "100000",
        "KAMIYO_HTTP_MAX_STREAMS_PER_CLIENT": "100000",
        "KAMIYO_HTTP_ANONYMOUS_STREAM_S": "3600",
    }


async def grow(
    server: Server, stream: bool, total: int, step: int, batch: int
) -> list[dict[str, float]]:
    """Open ``total`` sessions, ``batch`` at a time; RSS at 1 session and every ``step``."""
    held: list[asyncio.StreamWriter] = []
    rows: list[dict[str, float]] = []
    opened = 0
    started = time.monotonic()
    try:
        await open_session(server.port, stream, held)
        opened = 1
        await asyncio.sleep(1)
        rows.append({"sessions": 1, "rss_mb": rss_mb(server.process.pid)})
        while opened < total:
            size = min(batch, total - opened, step - opened % step)
            await asyncio.gather(*(open_session(server.port, stream, held) for _ in range(size)))
            opened += size
            if opened % step == 0 or opened == total:
                await asyncio.sleep(1)  # let the last answers' buffers go
                rows.append(
                    {
                        "sessions": opened,
                        "rss_mb": rss_mb(server.process.pid),
                        "open_s": time.monotonic() - started,
                    }
                )
                print(f"  {opened} sessions: {rows[-1]['rss_mb']:.0f} MB", file=sys.stderr)
    finally:
        for writer in held:
            writer.close()
    return rows


def per_session(rows: list[dict[str, float]]) -> float:
    """KB per session between the idle figure and the last one."""
    first, last = rows[0], rows[-1]
    return (last["rss_mb"] - first["rss_mb"]) * 1024 / max(1, last["sessions"] - first["sessions"])


def owner(frames: Any) -> str:
    """Who an allocation is charged to: KAMIYO if its code is on the stack, else the package
    of the innermost frame."""
    names = [frame.filename for frame in frames]
    if any("/kamiyo/" in name and "/bench/" not in name for name in names):
        return "kamiyo"
    innermost = names[-1]  # frames run from the oldest call to the allocation
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in innermost:
            tail = innermost.split(marker, 1)[1]
            return tail.split("/", 1)[0].removesuffix(".py") if "/" in tail else "stdlib"
    return "other"


def by_owner(snapshot: tracemalloc.Snapshot) -> Counter[str]:
    sizes: Counter[str] = Counter()
    for stat in snapshot.statistics("traceback"):
        sizes[owner(stat.traceback)] += stat.size
    return sizes


async def profile(count: int, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        env = server_env(data) | {SNAPSHOT_ENV: str(data / "snap")}
        server = Server(data, env)
        held: list[asyncio.StreamWriter] = []
        try:
            await open_session(server.port, True, held)

            def snapshot(n: int) -> tracemalloc.Snapshot:
                server.process.send_signal(signal.SIGUSR1)
                path = data / f"snap.{n}"
                while not path.exists():
                    time.sleep(0.2)
                return tracemalloc.Snapshot.load(str(path))

            await asyncio.sleep(1)
            before = snapshot(1)
            for start in range(0, count, batch):
                size = min(batch, count - start)
                await asyncio.gather(*(open_session(server.port, True, held) for _ in range(size)))
            await asyncio.sleep(1)
            after = snapshot(2)
        finally:
            for writer in held:
                writer.close()
            server.stop()
    grown = by_owner(after)
    grown.subtract(by_owner(before))
    top = [
        {"where": str(stat.traceback[0]), "kb_per_session": stat.size_diff / 1024 / count}
        for stat in after.compare_to(before, "lineno")[:15]
    ]
    return {
        "sessions": count,
        "kb_per_session_by_owner": {
            name: size / 1024 / count for name, size in grown.most_common() if size > 0
        },
        "top_lines": top,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"open_file_limit": raise_open_files()}
    for mode in args.modes:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), server_env(Path(tmp)))
            try:
                rows = await grow(server, mode == "stream", args.sessions, args.step, args.batch)
            finally:
                server.stop()
        report[mode] = {"rows": rows, "kb_per_session": per_session(rows)}
    if args.profile:
        report["profile"] = await profile(args.profile, args.batch)
    return report


def table(report: dict[str, Any]) -> str:
    lines = ["| sessions | " + " | ".join(f"RSS MB ({mode})" for mode in MODES if mode in report)]
    lines.append("|---:" * (1 + sum(mode in report for mode in MODES)) + "|")
    modes = [mode for mode in MODES if mode in report]
    if modes:
        for i, row in enumerate(report[modes[0]]["rows"]):
            cells = [f"{report[m]['rows'][i]['rss_mb']:.0f}" for m in modes]
            lines.append(f"| {int(row['sessions']):,} | " + " | ".join(cells) + " |")
        per = " | ".join(f"{report[m]['kb_per_session']:.1f}" for m in modes)
        lines.append(f"| KB per session | {per} |")
    if "profile" in report:
        lines.append("")
        lines.append(f"tracemalloc, KB per session ({report['profile']['sessions']} streams):")
        for name, kb in report["profile"]["kb_per_session_by_owner"].items():
            lines.append(f"  {name:<20} {kb:7.2f}")
        lines.append("top lines:")
        for top in report["profile"]["top_lines"]:
            lines.append(f"  {top['kb_per_session']:7.2f}  {top['where']}")
    return "\n".join(lines)


MODES = ("init", "stream")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--step", type=int, default=1000, help="RSS every this many sessions")
    parser.add_argument("--batch", type=int, default=100, help="sessions opened at once")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--profile", type=int, default=0, help="tracemalloc over N sessions")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.sessions * 2 + 1000:
        print(f"  the open-file hard limit ({hard}) may be too low", file=sys.stderr)
    report = asyncio.run(run(args))
    text = table(report)
    print(text)
    results_file("sessions", report, text)


if __name__ == "__main__":
    main()

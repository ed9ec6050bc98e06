"""Hostile-connection probes: how long ``/healthz`` takes while a server is under each one.

    python -m bench.probes                                  # starts `kamiyo serve` itself
    python -m bench.probes --python /work/main/.venv/bin/python   # another checkout's kamiyo
    python -m bench.probes --url http://127.0.0.1:8000      # a server that is already running
    python -m bench.probes --probes slow_head,idle --connections 300 --duration 20

A sampler asks ``GET /healthz`` on a new connection every ``--interval`` seconds, one request at
a time, for the whole run; each probe's table row gives the p50 and the maximum of the samples
taken while it ran, and how many failed (no answer within ``--healthz-timeout``). Probes:

- ``baseline``: nothing else.
- ``slow_head``: ``--connections`` connections send a request head one byte every
  ``--byte-interval`` seconds and never finish it.
- ``slow_body``: the same number send a complete head for a ``POST /mcp`` with a 100 kB body,
  then the body one byte at a time.
- ``idle``: the same number connect and send nothing.
- ``sse``: the same number open anonymous ``GET /sse`` streams and read them.
- ``big_resource``, ``big_tool``: ``--requests`` requests, one after the other, each a 4 MB
  ``resources/read`` of an unknown URI or a ``tools/call`` of an unknown tool whose name is
  4 MB long, posted to the stateless JSON endpoint (the log-amplification probe).

A hostile connection the server closes is opened again at once, so the pressure holds for the
whole ``--duration``; the row says how many were opened and how long the server held them
(time to the first byte or end it sent back). When this script starts the server itself (its
own data folder, stateless JSON, ``--log-format``, open-file limit ``--nofile``, as in the probe
that found the problem), the row also gives what the server wrote to stderr during the probe
(per request for the big requests; the access lines of the sampler's own requests left out),
and how many "out of system resource" lines.

``--attacker-address 127.0.0.2`` sends the hostile connections from another loopback address
(Linux routes all of 127.0.0.0/8 to lo), so that a server which treats 127.0.0.1 as a trusted
proxy counts them as one client of their own.
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).parent
BIG = 4_000_000  # under the SDK's 4 MiB body limit, so the request reaches the server
SLOW_BODY_LENGTH = 100_000
OUT_OF_RESOURCE = b"out of system resource"
CONNECT_S = 10
HEALTHZ_LINE = b'"GET /healthz HTTP/1.1"'
MCP_HEADERS = (
    "Content-Type: application/json\r\n"
    "Accept: application/json, text/event-stream\r\n"
    "MCP-Protocol-Version: 2025-11-25\r\n"
)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    attacker: str | None  # source address for hostile connections

    @property
    def authority(self) -> str:
        """The Host header (with the port: the DNS-rebinding guard wants it)."""
        return f"{self.host}:{self.port}"

    async def connect(self, hostile: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection within ``CONNECT_S`` (a server that stopped accepting may never)."""
        local = (self.attacker, 0) if hostile and self.attacker else None
        async with asyncio.timeout(CONNECT_S):
            return await asyncio.open_connection(self.host, self.port, local_addr=local)


@dataclass
class Samples:
    """The /healthz latencies (seconds) seen since ``since``; None for a failed one."""

    taken: list[tuple[float, float | None]] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[float | None]:
        return [latency for at, latency in self.taken if start <= at <= end]


async def healthz_once(target: Target, limit_s: float) -> float | None:
    """Seconds ``GET /healthz`` took on a new connection; None if it failed or took longer
    than ``limit_s``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await target.connect(hostile=False)
            request = (
                f"GET /healthz HTTP/1.1\r\nHost: {target.authority}\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode())
            answer = await reader.read()
            writer.close()
    except (OSError, TimeoutError):
        return None
    return time.monotonic() - started if answer.startswith(b"HTTP/1.1 200") else None


async def sample_healthz(
    target: Target, samples: Samples, interval: float, limit_s: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        started = time.monotonic()
        latency = await healthz_once(target, limit_s)
        samples.taken.append((started, latency))
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, interval - (time.monotonic() - started)))


@dataclass
class Hostile:
    """What the hostile connections of one probe met."""

    opened: int = 0
    refused: int = 0  # connect failed or timed out
    held_s: list[float] = field(default_factory=list)  # until the server answered or closed

    def summary(self) -> dict[str, object]:
        held = sorted(self.held_s)
        return {
            "opened": self.opened,
            "refused": self.refused,
            "closed_by_server": len(held),
            "held_p50_s": round(statistics.median(held), 1) if held else None,
            "held_max_s": round(held[-1], 1) if held else None,
        }


Sender = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def hold(
    target: Target,
    hostile: Hostile,
    opening: bytes,
    trickle: bytes | None,
    byte_interval: float,
    until: float,
) -> None:
    """Connections that send ``opening``, then ``trickle`` a byte at a time (or nothing),
    until the server answers or closes; each is opened again until ``until``."""
    while time.monotonic() < until:
        try:
            reader, writer = await target.connect(hostile=True)
        except (OSError, TimeoutError):
            hostile.refused += 1
            await asyncio.sleep(0.5)
            continue
        hostile.opened += 1
        opened = time.monotonic()

        async def dribble(writer: asyncio.StreamWriter = writer) -> None:
            writer.write(opening)
            for position in range(len(trickle or b"")):
                await asyncio.sleep(byte_interval)
                writer.write(trickle[position : position + 1] if trickle else b"")

        sending = asyncio.create_task(dribble())
        try:
            remaining = until - time.monotonic()
            first = await asyncio.wait_for(reader.read(1), max(0.1, remaining))
            if first is not None:  # b"" (closed) or the start of an answer
                hostile.held_s.append(time.monotonic() - opened)
        except TimeoutError:
            pass  # still held when the probe ended
        except OSError:
            hostile.held_s.append(time.monotonic() - opened)
        finally:
            sending.cancel()
            with suppress(asyncio.CancelledError, OSError):
                await sending
            writer.close()


def opening_for(probe: str, host: str) -> tuple[bytes, bytes | None]:
    """What a hostile connection of ``probe`` sends at once, and what it trickles."""
    if probe == "slow_head":
        return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n".encode(), b"X-Slow: " + b"a" * 10_000
    if probe == "slow_body":
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: {host}\r\n{MCP_HEADERS}"
            f"Content-Length: {SLOW_BODY_LENGTH}\r\n\r\n"
        )
        return head.encode(), b" " * SLOW_BODY_LENGTH
    if probe == "sse":
        return (
            f"GET /sse HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode(),
            None,
        )
    if probe == "idle":
        return b"", None
    raise ValueError(probe)


async def held_stream(target: Target, hostile: Hostile, until: float) -> None:
    """An SSE stream read to its end; opened again until ``until``."""
    while time.monotonic() < until:
        try:
            reader, writer = await target.connect(hostile=True)
        except (OSError, TimeoutError):
            hostile.refused += 1
            await asyncio.sleep(0.5)
            continue
        hostile.opened += 1
        opened = time.monotonic()
        opening, _ = opening_for("sse", target.authority)
        writer.write(opening)
        try:
            async with asyncio.timeout(max(0.1, until - time.monotonic())):
                while await reader.read(65536):
                    pass
            hostile.held_s.append(time.monotonic() - opened)
        except TimeoutError:
            pass
        except OSError:
            hostile.held_s.append(time.monotonic() - opened)
        finally:
            writer.close()


def big_message(probe: str) -> bytes:
    if probe == "big_resource":
        params: dict[str, Any] = {"uri": "kamiyo://exploits/" + "a" * BIG}
        method = "resources/read"
    else:
        params = {"name": "t" * BIG, "arguments": {}}
        method = "tools/call"
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


async def big_request(target: Target, probe: str) -> tuple[float, str]:
    """One big request; its answer's time and status line."""
    body = big_message(probe)
    started = time.monotonic()
    reader, writer = await target.connect(hostile=True)
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {target.authority}\r\n{MCP_HEADERS}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    try:
        async with asyncio.timeout(120):
            answer = await reader.read()
    finally:
        writer.close()
    return time.monotonic() - started, answer.split(b"\r\n", 1)[0].decode(errors="replace")


class ServerLog:
    """The stderr of a server this script started (or nothing to read), without the access
    lines of the sampler's own ``/healthz`` requests, which would otherwise be counted."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def size(self) -> int | None:
        return self.path.stat().st_size if self.path else None

    def since(self, offset: int | None) -> bytes:
        """What the server wrote after ``offset``, less the sampler's access lines."""
        if self.path is None or offset is None:
            return b""
        with self.path.open("rb") as log:
            log.seek(offset)
            written = log.read()
        return b"".join(
            line for line in written.splitlines(keepends=True) if HEALTHZ_LINE not in line
        )

    async def settled(self, quiet: float = 1.0, limit: float = 120.0) -> None:
        """Wait until the server has written nothing (but access lines) for ``quiet`` seconds:
        a server stalled on a log goes on writing it after answering."""
        if self.path is None:
            return
        deadline = time.monotonic() + limit
        offset = self.size()
        still_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - still_since < quiet:
            await asyncio.sleep(0.1)
            if self.since(offset):
                still_since = time.monotonic()
            offset = self.size()


def latency_row(latencies: list[float | None]) -> dict[str, object]:
    answered = sorted(latency for latency in latencies if latency is not None)
    return {
        "healthz_samples": len(latencies),
        "healthz_failed": len(latencies) - len(answered),
        "healthz_p50_ms": round(statistics.median(answered) * 1000, 1) if answered else None,
        "healthz_max_ms": round(answered[-1] * 1000, 1) if answered else None,
    }


async def run_probe(
    probe: str, args: argparse.Namespace, target: Target, log: ServerLog, samples: Samples
) -> dict[str, object]:
    offset = log.size()
    start = time.monotonic()
    row: dict[str, object] = {"probe": probe}
    if probe == "baseline":
        await asyncio.sleep(args.baseline)
    elif probe in ("big_resource", "big_tool"):
        requests = []
        for _ in range(args.requests):
            before = log.size()
            elapsed, status = await big_request(target, probe)
            await log.settled()
            written = len(log.since(before)) if before is not None else None
            requests.append({"seconds": round(elapsed, 2), "status": status, "stderr": written})
        row["requests"] = requests
        written_sizes = [r["stderr"] for r in requests if isinstance(r["stderr"], int)]
        if written_sizes:
            row["stderr_bytes_per_request"] = round(statistics.mean(written_sizes))
    else:
        hostile = Hostile()
        until = start + args.duration
        if probe == "sse":
            workers = [held_stream(target, hostile, until) for _ in range(args.connections)]
        else:
            opening, trickle = opening_for(probe, target.authority)
            workers = [
                hold(target, hostile, opening, trickle, args.byte_interval, until)
                for _ in range(args.connections)
            ]
        await asyncio.gather(*workers)
        row |= hostile.summary()
    end = time.monotonic()
    await log.settled()
    logged = log.since(offset)
    row |= latency_row(samples.between(start, end))
    if log.path is not None:
        row["stderr_bytes"] = len(logged)
        row["out_of_resource_lines"] = logged.count(OUT_OF_RESOURCE)
    return row


async def probe_all(
    args: argparse.Namespace, target: Target, log: ServerLog
) -> list[dict[str, object]]:
    samples = Samples()
    stop = asyncio.Event()
    sampler = asyncio.create_task(
        sample_healthz(target, samples, args.interval, args.healthz_timeout, stop)
    )
    rows = []
    try:
        for probe in args.probes:
            print(f"  {probe} …", file=sys.stderr)
            rows.append(await run_probe(probe, args, target, log, samples))
            print(f"    {json.dumps(rows[-1])}", file=sys.stderr)
            await asyncio.sleep(args.settle)  # let the server close what is left
    finally:
        stop.set()
        await sampler
    return rows


def limit_open_files(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextmanager
def started_server(args: argparse.Namespace) -> Iterator[tuple[Target, ServerLog]]:
    """``kamiyo serve`` (stateless JSON) on a free port with its own data folder."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMIYO_")}
        env |= {
            "KAMIYO_DATA_DIR": tmp,
            "KAMIYO_LOG_FORMAT": args.log_format,
            "PYTHONDONTWRITEBYTECODE": "1",  # leave the served checkout as it was
        }
        kamiyo = [args.python, "-m", "kamiyo"]
        subprocess.run(
            [*kamiyo, "db", "upgrade"], env=env, cwd=tmp, check=True, capture_output=True
        )
        port = free_port()
        log_path = folder / "server.log"
        with log_path.open("wb") as stderr:
            process = subprocess.Popen(
                [
                    *kamiyo,
                    "serve",
                    "--transport",
                    "http",
                    "--port",
                    str(port),
                    "--stateless",
                    "--json-response",
                ],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=limit_open_files(args.nofile) if args.nofile else None,
            )
        target = Target("127.0.0.1", port, args.attacker_address)
        try:
            wait_until_up(target, process)
            yield target, ServerLog(log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(target: Target, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        if asyncio.run(healthz_once(target, 2)) is not None:
            return
        time.sleep(0.2)
    raise TimeoutError("the server did not answer /healthz within 60 s")


COLUMNS = [
    ("probe", "probe", 13),
    ("healthz_p50_ms", "p50 ms", 8),
    ("healthz_max_ms", "max ms", 9),
    ("healthz_failed", "failed", 6),
    ("healthz_samples", "of", 4),
    ("opened", "opened", 7),
    ("held_p50_s", "held p50 s", 10),
    ("held_max_s", "held max s", 10),
    ("stderr_bytes", "stderr B", 10),
    ("stderr_bytes_per_request", "B/request", 10),
    ("out_of_resource_lines", "EMFILE lines", 12),
]


def table(rows: list[dict[str, object]]) -> str:
    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [" ".join(title.rjust(width) for _, title, width in COLUMNS)]
    for row in rows:
        lines.append(" ".join(cell(row.get(key)).rjust(width) for key, _, width in COLUMNS))
    return "\n".join(lines)


PROBES = ["baseline", "slow_head", "slow_body", "idle", "sse", "big_resource", "big_tool"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server (else one is started)")
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter whose `-m kamiyo` is started"
    )
    parser.add_argument(
        "--nofile", type=int, default=256, help="open-file limit of the started server (0: inherit)"
    )
    parser.add_argument("--log-format", choices=["pretty", "json"], default="pretty")
    parser.add_argument("--probes", default=",".join(PROBES), help="comma-separated")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--duration", type=float, default=20, help="seconds per probe")
    parser.add_argument("--baseline", type=float, default=5, help="seconds of baseline")
    parser.add_argument("--byte-interval", type=float, default=0.5)
    parser.add_argument("--requests", type=int, default=3, help="big requests per probe")
    parser.add_argument("--interval", type=float, default=0.25, help="between healthz samples")
    parser.add_argument("--healthz-timeout", type=float, default=30)
    parser.add_argument("--settle", type=float, default=3, help="pause between probes")
    parser.add_argument("--attacker-address", help="source address of hostile connections")
    args = parser.parse_args()
    args.probes = [name.strip() for name in args.probes.split(",") if name.strip()]
    unknown = set(args.probes) - set(PROBES)
    if unknown:
        parser.error(f"unknown probes: {', '.join(sorted(unknown))}; known: {', '.join(PROBES)}")
    # The hostile connections need descriptors of our own.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.url:
        parts = urlsplit(args.url)
        target = Target(parts.hostname or "127.0.0.1", parts.port or 80, args.attacker_address)
        rows = asyncio.run(probe_all(args, target, ServerLog(None)))
    else:
        with started_server(args) as (target, log):
            rows = asyncio.run(probe_all(args, target, log))
    print(table(rows))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"probes-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""Slow, idle and surplus connections against ``kamiyo serve --transport http`` on loopback.

Raw sockets, as an attacker would use them. Linux routes all of 127.0.0.0/8 to the loopback
interface, so hostile connections are sent from 127.0.0.2 and up: the server then counts them as
clients of their own, apart from the tests' ``/healthz`` (from 127.0.0.1, which uvicorn trusts as
a proxy and so does not cap per address). The server runs with short deadlines; the bounds the
tests wait are many times longer, and the finding was that nothing was ever closed.
"""

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.mcpserver.conftest import http_server_process, issue_key

HEAD_TIMEOUT_S = 2
# How long a test waits for the server to do what it must: far beyond each deadline.
PATIENCE_S = 60
PER_CLIENT = 4
STREAMS_PER_CLIENT = 2
ANONYMOUS_STREAM_S = 3
LIMITS = {
    "KAMIYO_HTTP_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
    "KAMIYO_HTTP_BODY_TIMEOUT_S": "2",
    "KAMIYO_HTTP_KEEP_ALIVE_S": "1",
    "KAMIYO_HTTP_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
    "KAMIYO_HTTP_MAX_STREAMS_PER_CLIENT": str(STREAMS_PER_CLIENT),
    "KAMIYO_HTTP_ANONYMOUS_STREAM_S": str(ANONYMOUS_STREAM_S),
}


@dataclass(frozen=True)
class Served:
    port: int
    key: str
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A stateful server (so ``GET /mcp`` streams exist) with short deadlines and small caps."""
    folder = tmp_path_factory.mktemp("connections")
    key = issue_key(folder)
    with http_server_process(folder, [], LIMITS) as (url, _):
        yield Served(urlsplit(url).port or 0, key, folder / "server.log")


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def host(port: int) -> str:
    return f"Host: 127.0.0.1:{port}\r\n"


TRICKLE_GAP_S = 0.5
# Bytes a trickling client sends before the test gives up: PATIENCE_S at one per gap, far more
# than fit in the server's head and body deadlines.
TRICKLE_BYTES = int(PATIENCE_S / TRICKLE_GAP_S)


def trickle_until_closed(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` a byte every 0.5 s (over and over) until the server closes; what it said."""
    sock.settimeout(TRICKLE_GAP_S)
    for byte in islice(cycle(data), TRICKLE_BYTES):
        try:
            sock.sendall(bytes([byte]))
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return b""
        return answer + read_to_end(sock)
    raise AssertionError(f"the server held a client trickling {TRICKLE_BYTES} bytes")


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the server closes, which it must do within PATIENCE_S (a stream's
    pings would keep a plain read going for ever)."""
    deadline = time.monotonic() + PATIENCE_S
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the server kept the connection open"
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=PATIENCE_S) as answer:
        return int(answer.status)


def test_a_slow_request_head_is_cut_with_408(server: Served) -> None:
    sock = connect(server.port, "127.0.0.2")
    with sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\n{host(server.port)}".encode())
        answer = trickle_until_closed(sock, b"X-Slow: " + b"a" * 1000)
    # The 408 may be lost to a reset when a byte crosses the close; it is never anything else.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:100]


def test_a_slow_request_body_is_cut_with_408(server: Served) -> None:
    sock = connect(server.port, "127.0.0.2")
    with sock:
        # A refused credential: the guard reads (and drops) the body before answering 401.
        head = (
            f"POST /mcp HTTP/1.1\r\n{host(server.port)}Authorization: Bearer kmy_live_nothing\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = trickle_until_closed(sock, b" ")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:100]


def test_a_connection_that_never_sends_is_closed(server: Served) -> None:
    with connect(server.port, "127.0.0.2") as sock:
        assert read_to_end(sock) == b""  # closed, with nothing said: nothing was asked


def test_an_idle_kept_alive_connection_is_closed(server: Served) -> None:
    with connect(server.port, "127.0.0.2") as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\n{host(server.port)}\r\n".encode())
        answer = read_to_end(sock)  # the answer, then the close after the keep-alive time
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_at_the_per_address_cap_the_oldest_idle_connection_makes_room(server: Served) -> None:
    held = [connect(server.port, "127.0.0.3") for _ in range(PER_CLIENT)]
    try:
        newcomer = connect(server.port, "127.0.0.3")
        with newcomer:
            # The oldest of the address's connections is closed for it, and it is served.
            assert read_to_end(held[0]) == b""
            newcomer.sendall(
                f"GET /healthz HTTP/1.1\r\n{host(server.port)}Connection: close\r\n\r\n".encode()
            )
            assert read_to_end(newcomer).startswith(b"HTTP/1.1 200 OK")
        assert healthz(server.port) == 200  # other addresses never noticed
    finally:
        for sock in held:
            sock.close()


def open_stream(port: int, source: str, path: str = "/sse", headers: str = "") -> socket.socket:
    sock = connect(port, source)
    request = f"GET {path} HTTP/1.1\r\n{host(port)}Accept: text/event-stream\r\n{headers}\r\n"
    sock.sendall(request.encode())
    return sock


def first_line(sock: socket.socket) -> bytes:
    sock.settimeout(PATIENCE_S)
    return sock.recv(65536).split(b"\r\n", 1)[0]


def test_streams_per_address_are_capped(server: Served) -> None:
    bearer = f"Authorization: Bearer {server.key}\r\n"  # no lifetime: they stay open
    streams = [
        open_stream(server.port, "127.0.0.4", headers=bearer) for _ in range(STREAMS_PER_CLIENT)
    ]
    try:
        for stream in streams:
            assert first_line(stream) == b"HTTP/1.1 200 OK"
        with open_stream(server.port, "127.0.0.4", headers=bearer) as refused:
            answer = read_to_end(refused)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429")
        assert json.loads(body)["error"] == "too_many_streams"
        with open_stream(server.port, "127.0.0.5", headers=bearer) as elsewhere:
            assert first_line(elsewhere) == b"HTTP/1.1 200 OK"  # another address is not
    finally:
        for stream in streams:
            stream.close()


def initialize(port: int) -> str:
    """A stateful session, opened anonymously; its id."""
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test-connections", "version": "0"},
        },
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/mcp",
        data=json.dumps(message).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=PATIENCE_S) as answer:
        return str(answer.headers["mcp-session-id"])


@pytest.mark.parametrize("path", ["/mcp", "/sse"])
def test_an_anonymous_stream_ends_and_can_be_opened_again(server: Served, path: str) -> None:
    headers = ""
    if path == "/mcp":
        session = initialize(server.port)
        headers = f"mcp-session-id: {session}\r\nmcp-protocol-version: 2025-11-25\r\n"
    for _ in range(2):  # the second time: the session's stream slot was freed (no 409)
        with open_stream(server.port, "127.0.0.6", path, headers) as stream:
            answer = read_to_end(stream)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert answer.endswith(b"0\r\n\r\n")  # the end of the chunked answer: a clean end


OPEN_FILES = 256
FLOOD = 300


def test_a_flood_of_idle_connections_under_a_low_open_file_limit(tmp_path: Path) -> None:
    """300 idle connections against an open-file limit of 256 (issue 11: /healthz timed out and
    asyncio wrote 65,519 accept() errors). Sent from 127.0.0.1, a trusted proxy's address, so
    the per-address cap does not apply and the cap in all must hold."""
    with http_server_process(tmp_path, ["--stateless"], open_files=OPEN_FILES) as (url, _):
        port = urlsplit(url).port or 0
        flood = []
        try:
            for _ in range(FLOOD):
                sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)
                flood.append(sock)
            assert healthz(port) == 200
            # The oldest were closed to make room (the cap sits below the open-file limit).
            flood[0].settimeout(PATIENCE_S)
            assert flood[0].recv(1) == b""
        finally:
            for sock in flood:
                sock.close()
    log = (tmp_path / "server.log").read_text()
    assert log.count("out of system resource") <= 2, log[-3000:]
    assert log.count("Closed a connection from") <= 2, log[-3000:]

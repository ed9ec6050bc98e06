"""Raw HTTP/1.1 over a socket, for what HTTP clients will not send (a body cut short, a Host
header of 100 kB), and reading what a server started by the tests wrote to its log."""

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MCP_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}
# The session opening a stateful server asks for, as any client sends it.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LOG_TIMEOUT_S = 30


def request_head(
    url: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    length: int = 0,
    host: str | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or urlsplit(url).netloc}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if method == "POST":
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def message(self) -> Any:
        """The JSON-RPC message in the body (plain JSON, or the first event of an SSE stream);
        other bodies as text, and None for none."""
        media = self.headers.get("content-type", "")
        if media.startswith("text/event-stream"):
            data = next(line for line in self.body.split(b"\r\n") if line.startswith(b"data:"))
            return json.loads(data.removeprefix(b"data:"))
        if not self.body.strip():
            return None
        return json.loads(self.body) if media.startswith("application/json") else self.body.decode()


def exchange(url: str, data: bytes, timeout: float = 30) -> Answer:
    """Sends ``data`` on a new connection and reads the one answer (to its Content-Length, or
    to its first SSE event)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before an answer: {received!r}")
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        streamed = headers.get("content-type", "").startswith("text/event-stream")
        length = int(headers.get("content-length", "0"))
        while (b"\r\n\r\n" not in body) if streamed else (len(body) < length):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Answer(int(status_line.split(" ", 2)[1]), headers, body)


def post_json(
    url: str, path: str, message: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POSTs one JSON body; the status and the decoded answer (None when it has no body)."""
    body = json.dumps(message).encode()
    head = request_head(url, "POST", path, {**MCP_HEADERS, **(headers or {})}, len(body))
    answer = exchange(url, head + body)
    return answer.status, answer.message()


def send_and_leave(url: str, data: bytes) -> None:
    """Sends ``data`` and closes the connection without reading."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)


class ServerLog:
    """A server's log file, read from a mark on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = 0

    def mark(self) -> None:
        self.start = self.path.stat().st_size

    def since_mark(self) -> str:
        with self.path.open("rb") as log:
            log.seek(self.start)
            return log.read().decode(errors="replace")

    def wait_for(self, text: str) -> str:
        """What was logged since the mark, once it contains ``text`` (polled, not slept on)."""
        deadline = time.monotonic() + LOG_TIMEOUT_S
        while time.monotonic() < deadline:
            logged = self.since_mark()
            if text in logged:
                return logged
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {LOG_TIMEOUT_S} s: {logged[-2000:]}")


def longest_run(text: str, char: str = "x") -> int:
    longest = current = 0
    for seen in text:
        current = current + 1 if seen == char else 0
        longest = max(longest, current)
    return longest

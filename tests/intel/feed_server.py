"""A real HTTP server on 127.0.0.1 that serves whatever a test sets, for the fetch layer and the
ingest tests: feeds (with ETag and Last-Modified, answering 304 to matching conditional
requests), scripted sequences (429 with Retry-After, then 200; 500 forever), truncated and
empty bodies, slow answers. It records every request (method, path, headers).

    def test_x(feed_server: FeedServer) -> None:
        feed_server.serve("/rss", b"<rss/>", content_type="application/rss+xml", etag='"v1"')
        feed_server.script("/hacks", [Reply(429, headers={"Retry-After": "1"}), Reply(200, b"[]")])
        feed_server.truncated("/big", b"x" * 1000, sent=10)
        url = feed_server.url("/rss")
"""

import gzip
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.served import ServedInThread


@dataclass(frozen=True)
class Reply:
    """One answer. ``sent`` sends only that many bytes of the body (Content-Length still the
    whole) and closes the connection: a truncated body. ``gzip`` compresses the body on the wire.
    ``delay_s`` waits before answering (for timeouts)."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    sent: int | None = None
    gzip: bool = False
    delay_s: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with its query string
    headers: dict[str, str]  # names lower-cased

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _not_modified(reply: Reply, request: Request) -> bool:
    """RFC 9110: If-None-Match decides when sent; otherwise If-Modified-Since."""
    tags = request.header("if-none-match")
    if tags is not None:
        wanted = {tag.strip() for tag in tags.split(",")}
        return reply.etag is not None and ("*" in wanted or reply.etag in wanted)
    since = request.header("if-modified-since")
    if since is None or reply.last_modified is None:
        return False
    try:
        return parsedate_to_datetime(reply.last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"  # keep-alive, as real feeds do
    timeout = 10  # an idle kept-alive connection's thread ends on its own

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        reply = self.server.owner.next_reply(request)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        body = gzip.compress(reply.body) if reply.gzip else reply.body
        status = 304 if reply.status == 200 and _not_modified(reply, request) else reply.status
        self.send_response(status)
        for name, value in (("ETag", reply.etag), ("Last-Modified", reply.last_modified)):
            if value is not None:
                self.send_header(name, value)
        if status == 304:
            self.end_headers()
            return
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        if reply.gzip:
            self.send_header("Content-Encoding", "gzip")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name in reply.headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body if reply.sent is None else body[: reply.sent])
        if reply.sent is not None:
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: stdout and stderr belong to the test runner


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a client that keeps a connection open must not hold up teardown

    def __init__(self, owner: "FeedServer") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-answer (a body over its cap, a timeout) is what some
        # tests do on purpose: nothing to print. Anything else is a bug in this server.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class FeedServer(ServedInThread):
    """Routes by path (the query string is ignored for routing, kept in the request log); a
    path no test set answers 404. Safe to change routes while requests are served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, list[Reply]] = {}
        self._requests: list[Request] = []
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="feed-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def serve(
        self,
        path: str,
        body: bytes | str = b"",
        *,
        content_type: str | None = "application/octet-stream",
        etag: str | None = None,
        last_modified: str | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        gzip: bool = False,
    ) -> None:
        """Answer every request for ``path`` alike (replacing what it answered before: a
        feed's second version); 304 when a conditional request matches ``etag`` or
        ``last_modified``."""
        data = body.encode() if isinstance(body, str) else body
        extra = dict(headers or {})
        reply = Reply(status, data, content_type, etag, last_modified, extra, gzip=gzip)
        self.script(path, [reply])

    def script(self, path: str, replies: Sequence[Reply | int]) -> None:
        """Answer the requests for ``path`` with ``replies`` in turn, the last one from then
        on (``[500]`` is 500 forever). A bare status is that status with an empty body."""
        if not replies:
            raise ValueError("a script needs at least one reply")
        steps = [Reply(r) if isinstance(r, int) else r for r in replies]
        with self._lock:
            self._routes["/" + path.lstrip("/")] = steps

    def truncated(self, path: str, body: bytes, *, sent: int, content_type: str = "") -> None:
        """Announce all of ``body`` and send only its first ``sent`` bytes, then hang up."""
        self.script(path, [Reply(200, body, content_type or None, sent=sent)])

    def next_reply(self, request: Request) -> Reply:
        route = request.path.partition("?")[0]
        with self._lock:
            self._requests.append(request)
            steps = self._routes.get(route)
            if steps is None:
                return Reply(404, b"not found", "text/plain")
            return steps.pop(0) if len(steps) > 1 else steps[0]

    @property
    def requests(self) -> list[Request]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[Request]:
        route = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path.partition("?")[0] == route]


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A :class:`FeedServer` on an ephemeral loopback port, stopped at teardown."""
    with FeedServer() as server:
        yield server

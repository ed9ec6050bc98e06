"""POSTs the SDK gets wrong, against real servers: a request whose id is malformed (it answered
202 and nothing else), and a client that leaves mid-body (an ERROR with a traceback), on
Streamable HTTP (stateless and with a session) and on the legacy SSE transport."""

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.mcpserver.conftest import STATELESS, running_http_server
from tests.web.raw_http import (
    INITIALIZE,
    INITIALIZED,
    MCP_HEADERS,
    ServerLog,
    exchange,
    post_json,
    request_head,
    send_and_leave,
)

MALFORMED_IDS = [{"a": 1}, 1.5, None, True, [1]]
INVALID_REQUEST = -32600


@dataclass
class Served:
    url: str
    log: ServerLog
    stateful: bool

    def session(self) -> dict[str, str]:
        """The headers that carry a new Streamable HTTP session (none when stateless)."""
        if not self.stateful:
            return {}
        body = json.dumps(INITIALIZE).encode()
        answer = exchange(
            self.url, request_head(self.url, "POST", "/mcp", MCP_HEADERS, len(body)) + body
        )
        headers = {"Mcp-Session-Id": answer.headers["mcp-session-id"]}
        assert post_json(self.url, "/mcp", INITIALIZED, headers)[0] == 202
        return headers


@pytest.fixture(scope="module", params=["stateless-json", "stateful"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"mcp-posts-{request.param}")
    stateful = request.param == "stateful"
    with running_http_server(folder, [] if stateful else STATELESS) as url:
        yield Served(url, ServerLog(folder / "server.log"), stateful)


@contextmanager
def sse_stream(url: str) -> Iterator[str]:
    """An open legacy SSE stream; yields the path its messages are posted to."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as stream:
        stream.sendall(request_head(url, "GET", "/sse", {"Accept": "text/event-stream"}))
        received = b""
        while b"session_id=" not in received or not received.rstrip(b" ").endswith(b"\r\n"):
            received += stream.recv(65536)
        yield received.split(b"data: ", 1)[1].split(b"\r\n", 1)[0].decode()


def _assert_invalid_request(status: int, answer: Any) -> None:
    assert status == 400
    assert answer["id"] is None
    assert answer["error"]["code"] == INVALID_REQUEST
    assert "string or an integer" in answer["error"]["message"]


@pytest.mark.parametrize("ident", MALFORMED_IDS, ids=json.dumps)
def test_a_malformed_id_gets_invalid_request(served: Served, ident: Any) -> None:
    headers = served.session()
    served.log.mark()
    message = {"jsonrpc": "2.0", "id": ident, "method": "tools/list"}
    _assert_invalid_request(*post_json(served.url, "/mcp", message, headers))
    logged = served.log.wait_for("refused a request whose id is")
    assert "ERROR" not in logged


def test_a_malformed_id_over_sse_gets_invalid_request(served: Served) -> None:
    with sse_stream(served.url) as messages:
        assert post_json(served.url, messages, INITIALIZE)[0] == 202
        assert post_json(served.url, messages, INITIALIZED)[0] == 202
        for ident in MALFORMED_IDS:
            message = {"jsonrpc": "2.0", "id": ident, "method": "ping"}
            _assert_invalid_request(*post_json(served.url, messages, message))
        # A well-formed request is accepted as before (its answer goes down the stream).
        ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
        assert post_json(served.url, messages, ping)[0] == 202


def test_well_formed_requests_and_notifications_are_answered_as_before(served: Served) -> None:
    headers = served.session()
    for ident in (7, "seven"):
        ping = {"jsonrpc": "2.0", "id": ident, "method": "ping"}
        assert post_json(served.url, "/mcp", ping, headers) == (
            200,
            {"jsonrpc": "2.0", "id": ident, "result": {}},
        )
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
    assert post_json(served.url, "/mcp", cancel, headers) == (202, None)


def test_a_client_leaving_mid_body_is_one_info_line(served: Served) -> None:
    """No traceback and no ERROR: the server fixture also fails on a traceback in its log."""
    headers = served.session()
    with sse_stream(served.url) as messages:
        for path in ("/mcp", messages, "/api/v1/signup"):
            served.log.mark()
            head = request_head(served.url, "POST", path, {**MCP_HEADERS, **headers}, length=1_000)
            send_and_leave(served.url, head + b'{"jsonrpc": "2.0"')
            logged = served.log.wait_for(f"POST {path.split('?')[0]}: the client left")
            assert "ERROR" not in logged
            assert "Traceback" not in logged

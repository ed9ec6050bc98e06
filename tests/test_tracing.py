"""The optional integrations, each against a real receiver on loopback: OpenTelemetry spans reach
an OTLP/HTTP receiver (its protobuf decoded with the OTLP proto package), Sentry events reach a
DSN endpoint (the envelope read as Sentry's ingest reads it), with no secret in them; without
their settings neither package is even imported."""

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from kamiyo.observability.tracing import REQUEST_ID_ATTRIBUTE, TRACES_PATH
from tests.mcpserver.conftest import STATELESS, STATELESS_HEADERS, http_server_process, server_env
from tests.served import ServedInThread

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
# What the integrations import. Not opentelemetry itself: the MCP SDK always imports its API,
# and redis-py its SDK's metrics when installed.
OPTIONAL = ("opentelemetry.exporter", "opentelemetry.sdk.trace", "sentry_sdk")


class Receiver(ServedInThread):
    """Records every POST (path and body, decompressed) and answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as served:
        yield served


def _spans(receiver: Receiver) -> list[Span]:
    spans = []
    for path, body in receiver.posts:
        assert path == TRACES_PATH
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            names = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert names["service.name"] == "kamiyo"
            spans += [span for scope in resource.scope_spans for span in scope.spans]
    return spans


def _attributes(span: Span) -> dict[str, Any]:
    return {a.key: a.value.string_value or a.value.int_value for a in span.attributes}


def test_spans_of_http_requests_and_tool_calls_reach_the_collector(
    tmp_path: Path, receiver: Receiver
) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    search = call | {"params": {"name": "search_exploits", "arguments": {"limit": 1}}}
    env = {"KAMIYO_OTEL_ENDPOINT": receiver.url}
    with http_server_process(tmp_path, STATELESS, env) as (url, _):
        traced = httpx2.post(
            f"{url}/mcp", json=search, headers=STATELESS_HEADERS | {"traceparent": TRACEPARENT}
        )
        assert traced.status_code == 200, traced.text
        rest = httpx2.get(f"{url}/api/v1/exploits?limit=1", headers={"X-Request-ID": "rest-9"})
        assert rest.status_code == 200, rest.text
    # The server flushed its spans as it stopped.
    spans = _spans(receiver)
    by_name = {span.name: span for span in spans}
    mcp, tool = by_name["POST /mcp"], by_name["tool search_exploits"]
    assert mcp.trace_id.hex() == TRACE_ID  # continues the caller's trace
    assert mcp.parent_span_id.hex() == PARENT_SPAN
    assert mcp.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert _attributes(mcp)[REQUEST_ID_ATTRIBUTE] == TRACE_ID
    assert _attributes(mcp)["http.response.status_code"] == 200
    # The tool call, run in the SDK's session task, is still a child of its request's span.
    assert tool.trace_id == mcp.trace_id
    assert tool.parent_span_id == mcp.span_id
    assert _attributes(tool)[REQUEST_ID_ATTRIBUTE] == TRACE_ID
    api = by_name["GET /api/v1/exploits"]
    assert _attributes(api)[REQUEST_ID_ATTRIBUTE] == "rest-9"
    assert api.trace_id.hex() != TRACE_ID  # a trace of its own
    assert "limit" not in api.name  # the path as logs show it: no query string


SECRET_KEY = "sk_test_sentrySecretThatMustNotLeave0123"
API_KEY = "kmy_live_" + "A1b2C3d4" * 5
# Logs an error with an API key in its message and its exception, in a request, then exits
# (sentry-sdk sends what it holds at exit).
SENTRY_SCRIPT = f"""
import logging
from kamiyo.cli import _configure
from kamiyo.observability.request_context import serving
_configure(verbose=False)
with serving("req-sentry-1"):
    try:
        raise RuntimeError("refused Bearer {API_KEY} with {SECRET_KEY}")
    except RuntimeError:
        logging.getLogger("kamiyo.test").exception("call failed for key %s", "{API_KEY}")
"""


def _envelope_items(body: bytes) -> list[dict[str, Any]]:
    """An envelope: a header line, then per item a header line and its payload."""
    lines = body.split(b"\n")
    items = []
    for index in range(1, len(lines) - 1, 2):
        header = json.loads(lines[index])
        if header.get("type") == "event":
            items.append(json.loads(lines[index + 1]))
    return items


def test_error_events_reach_sentry_scrubbed(tmp_path: Path, receiver: Receiver) -> None:
    dsn = receiver.url.replace("http://", "http://publickey@") + "/42"
    env = server_env(tmp_path) | {
        "KAMIYO_SENTRY_DSN": dsn,
        "KAMIYO_STRIPE_SECRET_KEY": SECRET_KEY,
        "KAMIYO_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-c", SENTRY_SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert API_KEY not in done.stderr
    assert SECRET_KEY not in done.stderr
    [(path, body)] = [(p, b) for p, b in receiver.posts if p.endswith("/envelope/")]
    assert path == "/api/42/envelope/"
    assert API_KEY.encode() not in body
    assert SECRET_KEY.encode() not in body
    [event] = _envelope_items(body)
    assert event["tags"]["request_id"] == "req-sentry-1"
    assert event["logger"] == "kamiyo.test"
    assert "[redacted]" in json.dumps(event)
    assert "request" not in event  # nothing of what a caller sent


def _imported(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """The optional packages a process has imported once it configured itself as the CLI
    does and built the HTTP app."""
    script = (
        "import sys\n"
        "from kamiyo.cli import _configure\n"
        "from kamiyo.config import get_settings\n"
        "from kamiyo.mcpserver.server import build_server\n"
        "from kamiyo.web.app import create_app\n"
        "_configure(verbose=False)\n"
        "create_app(get_settings(), build_server)\n"
        f"print(sorted({{p for m in sys.modules for p in {OPTIONAL!r} if m.startswith(p)}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=server_env(tmp_path) | env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: list[str] = json.loads(done.stdout.strip().replace("'", '"'))
    return found


def test_without_their_settings_the_integrations_are_not_imported(tmp_path: Path) -> None:
    assert not any(name.startswith(("KAMIYO_OTEL", "KAMIYO_SENTRY")) for name in os.environ)
    assert _imported(tmp_path, {}) == []
    # The same check sees them when they are set.
    both = {
        "KAMIYO_OTEL_ENDPOINT": "http://127.0.0.1:9",
        "KAMIYO_SENTRY_DSN": "http://k@127.0.0.1:9/1",
    }
    assert _imported(tmp_path, both) == sorted(OPTIONAL)

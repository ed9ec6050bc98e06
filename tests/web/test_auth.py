"""The MCP endpoints as an OAuth resource server: metadata documents and 401 challenges.

Most of this runs against ``kamiyo serve --transport http`` over loopback, as clients meet it;
the gate failing and a bad setting are shown in process.
"""

import datetime as dt
import json
import logging
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from kamiyo import outages
from kamiyo.access.gate import OpenGate, Refusal
from kamiyo.access.keys import KEY_PREFIX, VISIBLE_CHARS
from kamiyo.access.tokens import ALGORITHM
from kamiyo.config import DEVELOPMENT_SECRET, Settings, SiteSettings
from kamiyo.web.auth import ResourceServer
from tests.mcpserver.conftest import issue_key, run_kamiyo, running_http_server, server_env
from tests.mcpserver.test_node_clients import NODE_DIR, node_binary

pytestmark = pytest.mark.anyio

METADATA = "/.well-known/oauth-protected-resource"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test-auth", "version": "0"},
    },
}
PUBLIC_URL = "https://kamiyo.example"
AUTH_SERVER = "https://auth.example"


@dataclass(frozen=True)
class Served:
    url: str
    folder: Path
    key: str  # an enterprise key
    revoked: str  # a key that was revoked


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Anonymous callers allowed, no public URL: the metadata names the URL asked for."""
    folder = tmp_path_factory.mktemp("auth-open")
    key = issue_key(folder)
    revoked = issue_key(folder, "personal")
    prefix = revoked[: len(KEY_PREFIX) + VISIBLE_CHARS]
    run_kamiyo(folder, "keys", "revoke", prefix)
    with running_http_server(folder, []) as url:
        yield Served(url, folder, key, revoked)


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Anonymous access off, a public URL (trailing slash and all) and an authorization server."""
    env = {
        "KAMIYO_ALLOW_ANONYMOUS": "false",
        "KAMIYO_PUBLIC_URL": PUBLIC_URL + "/",
        "KAMIYO_AUTHORIZATION_SERVERS": json.dumps([AUTH_SERVER]),
    }
    with running_http_server(tmp_path_factory.mktemp("auth-closed"), [], env) as url:
        yield url


def _jwt(**changes: Any) -> str:
    """A token signed with the server's (development) secret, claims changed by keyword."""
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": "1",
        "aud": "kamiyo",
        "iss": "kamiyo",
        "iat": now,
        "nbf": now,
        "exp": now + dt.timedelta(hours=1),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims | changes, DEVELOPMENT_SECRET, algorithm=ALGORITHM)


def _result(response: httpx2.Response) -> Any:
    """The JSON-RPC result of a plain JSON or a one-event SSE answer."""
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    return json.loads(text)["result"]


async def test_metadata_names_the_url_asked_for(open_server: Served) -> None:
    url = open_server.url
    async with httpx2.AsyncClient(headers={"Origin": "https://app.example"}) as http:
        for path, resource in [("/mcp", f"{url}/mcp"), ("/sse", f"{url}/sse"), ("", url)]:
            response = await http.get(f"{url}{METADATA}{path}")
            assert response.status_code == 200
            assert response.json() == {
                "resource": resource,
                "bearer_methods_supported": ["header"],
                "resource_name": "KAMIYO",
            }
            assert response.headers["access-control-allow-origin"] == "*"


async def test_metadata_from_settings(closed_server: str) -> None:
    async with httpx2.AsyncClient() as http:
        for path in ["/mcp", ""]:
            response = await http.get(f"{closed_server}{METADATA}{path}")
            assert response.status_code == 200
            assert response.json() == {
                "resource": PUBLIC_URL + path,
                "authorization_servers": [AUTH_SERVER],
                "bearer_methods_supported": ["header"],
                "resource_name": "KAMIYO",
            }


async def test_anonymous_callers_are_served_when_allowed(open_server: Served) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{open_server.url}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 200
    assert _result(response)["serverInfo"]["name"] == "kamiyo"


async def test_anonymous_callers_are_challenged_when_not_allowed(closed_server: str) -> None:
    async with httpx2.AsyncClient() as http:
        # Each endpoint with the resource it belongs to (SSE message posts: /sse).
        answers = [
            (await http.post(f"{closed_server}/mcp", json=INITIALIZE, headers=MCP_HEADERS), "/mcp"),
            (await http.get(f"{closed_server}/sse"), "/sse"),
            (await http.post(f"{closed_server}/messages/?session_id=x", json=INITIALIZE), "/sse"),
        ]
    for response, resource in answers:
        assert response.status_code == 401
        # RFC 6750 §3.1: no error code when the request had no credential.
        assert response.headers["www-authenticate"] == (
            f'Bearer resource_metadata="{PUBLIC_URL}{METADATA}{resource}"'
        )
        assert response.headers["access-control-expose-headers"] == "WWW-Authenticate"
        assert response.json() == {
            "error": "unauthenticated",
            "error_description": "This server needs an API key or access token "
            "(Authorization: Bearer ...).",
        }


async def test_healthz_needs_no_credential(closed_server: str) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{closed_server}/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# (Authorization header from the served keys, error, error_description)
REFUSED: dict[str, tuple[Callable[[Served], bytes], str, str]] = {
    "garbage": (
        lambda s: f"Bearer garbage-{uuid.uuid4().hex}".encode(),
        "invalid_token",
        "Access token refused: token is malformed.",
    ),
    "unknown-key": (
        lambda s: f"Bearer {KEY_PREFIX}{uuid.uuid4().hex}".encode(),
        "invalid_token",
        "Unknown or revoked API key.",
    ),
    "revoked-key": (
        lambda s: f"Bearer {s.revoked}".encode(),
        "invalid_token",
        "Unknown or revoked API key.",
    ),
    "expired-jwt": (
        lambda s: f"Bearer {_jwt(exp=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))}".encode(),
        "invalid_token",
        "Access token refused: token expired.",
    ),
    "jwt-for-another-audience": (
        lambda s: f"Bearer {_jwt(aud='https://elsewhere.example/mcp')}".encode(),
        "invalid_token",
        "Access token refused: token is for another audience.",
    ),
    "basic-scheme": (
        lambda s: b"Basic " + uuid.uuid4().hex.encode(),
        "invalid_request",
        "Authorization must use the Bearer scheme: Authorization: Bearer <API key or token>.",
    ),
    "empty-bearer": (
        lambda s: b"Bearer",
        "invalid_request",
        "The Authorization header has no credential after Bearer.",
    ),
    "100-kB": (
        lambda s: b"Bearer " + uuid.uuid4().hex.encode() * 3200,
        "invalid_token",
        "The bearer credential is longer than 8192 characters; no API key or access token is.",
    ),
    "non-ascii-bytes": (
        lambda s: b"Bearer kmy_live_\xff\xfe\x80" + uuid.uuid4().hex.encode(),
        "invalid_token",
        "The bearer credential has characters no API key or access token contains.",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
async def test_refused_credentials_are_challenged(open_server: Served, case: str) -> None:
    make, error, description = REFUSED[case]
    authorization = make(open_server)
    # As bytes, so that the header goes out exactly as made, non-ASCII and all.
    headers = {k.encode(): v.encode() for k, v in MCP_HEADERS.items()}
    headers[b"Authorization"] = authorization
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{open_server.url}/mcp", json=INITIALIZE, headers=headers)
    assert response.status_code == 401
    metadata = f"{open_server.url}{METADATA}/mcp"
    assert response.headers["www-authenticate"] == (
        f'Bearer error="{error}", error_description="{description}", resource_metadata="{metadata}"'
    )
    assert response.headers["access-control-expose-headers"] == "WWW-Authenticate"
    assert response.json() == {"error": error, "error_description": description}
    log = (open_server.folder / "server.log").read_bytes()
    assert f"401 on POST /mcp: {description}".encode() in log
    credential = authorization.partition(b" ")[2]
    if credential:
        assert credential not in log


async def test_a_valid_key_is_served_on_both_transports(open_server: Served) -> None:
    bearer = {"Authorization": f"Bearer {open_server.key}"}
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{open_server.url}/mcp", json=INITIALIZE, headers=MCP_HEADERS | bearer
        )
    assert response.status_code == 200
    # assess_protocol_risk is locked for anonymous callers: this answer needs the key's tier.
    async with (
        httpx2.AsyncClient(headers=bearer) as http2,
        Client(streamable_http_client(f"{open_server.url}/mcp", http_client=http2)) as client,
    ):
        result = await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
        assert result.is_error is not True, result.content
    async with Client(sse_client(f"{open_server.url}/sse", headers=bearer)) as client:
        result = await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
        assert result.is_error is not True, result.content


@dataclass(frozen=True)
class BrokenGate(OpenGate):
    error: Exception

    async def check_credential(self, credential: str | None) -> Refusal | None:
        raise self.error


async def _post_twice(gate: OpenGate) -> list[httpx2.Response]:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("reached")

    settings = Settings(_env_file=None)
    resource = ResourceServer(settings.site, settings.auth, gate)
    app = Starlette(routes=resource.guard([Route("/mcp", endpoint, methods=["POST"])], "/mcp"))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        return [await http.post("/mcp", headers={"Authorization": "Bearer abc"}) for _ in "ab"]


@pytest.mark.usefixtures("database_outage")
async def test_a_gate_whose_database_is_down_answers_503_and_logs_one_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        responses = await _post_twice(BrokenGate(10, ConnectionRefusedError(111, "refused")))
    for response in responses:
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert "refused" not in response.text
    assert [r.getMessage() for r in caplog.records if r.name == "kamiyo.outages"] == [
        "database unavailable (ConnectionRefusedError: [Errno 111] refused); requests that need "
        "it are refused as temporarily unavailable until it is back"
    ]  # once for both requests, and no traceback (before: one per request)
    assert not [r for r in caplog.records if r.exc_info]
    assert outages.DATABASE.down


async def test_a_gate_failing_otherwise_answers_503_with_the_cause_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="kamiyo.web.auth"):
        responses = await _post_twice(BrokenGate(10, RuntimeError("a bug")))
    assert [r.status_code for r in responses] == [503, 503]
    assert "a bug" not in responses[0].text
    logged = [r for r in caplog.records if r.name == "kamiyo.web.auth"]
    assert len(logged) == 2
    assert logged[0].exc_info is not None  # a bug keeps its traceback


def test_a_public_url_that_is_not_a_url_stops_the_start() -> None:
    with pytest.raises(ValidationError, match="needs http"):
        SiteSettings(public_url="kamiyo.example", _env_file=None)
    # Settings copied in code skip that check; the resource server checks again.
    settings = Settings(_env_file=None).with_changes(site={"public_url": "kamiyo.example"})
    with pytest.raises(ValueError, match="KAMIYO_PUBLIC_URL"):
        ResourceServer(settings.site, settings.auth, OpenGate(max_results=10))


# The TypeScript SDK's own discovery, and its client refused with a bad key.
DISCOVER = """
import { discoverOAuthProtectedResourceMetadata } from "@modelcontextprotocol/sdk/client/auth.js";
const metadata = await discoverOAuthProtectedResourceMetadata(new URL(process.argv[1]));
process.stdout.write(JSON.stringify(metadata));
"""


def test_typescript_sdk_discovers_metadata_and_reports_401(open_server: Served) -> None:
    node = node_binary()
    url = f"{open_server.url}/mcp"
    env = server_env(open_server.folder) | {"KAMIYO_API_KEY": f"{KEY_PREFIX}{'x' * 43}"}
    found = subprocess.run(
        [node, "--input-type=module", "-e", DISCOVER, url],
        env=env,
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(found.stdout)["resource"] == url
    refused = subprocess.run(
        [node, "client.mjs", "v1", "http", url],
        env=env,
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "code: 401" in refused.stderr  # the SDK's StreamableHTTPError for the status
    assert "Unknown or revoked API key." in refused.stderr


async def test_a_100_kb_header_sent_in_pieces_is_still_answered_401(open_server: Served) -> None:
    """A long request head can arrive over several reads; the server must wait for all of it.

    The HTTP parser's default buffer is 16 kB: past it, a head still arriving was cut off with
    a bare 400 and a reset connection instead of the challenge.
    """
    host, port = open_server.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(INITIALIZE).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\nAuthorization: Bearer {'a' * 100_000}\r\n\r\n"
    ).encode()
    async with await anyio.connect_tcp(host, int(port)) as stream:
        for start in range(0, len(head), 8192):
            await stream.send(head[start : start + 8192])
            await anyio.wait_all_tasks_blocked()  # let the server read each piece on its own
        await stream.send(body)
        answer = b""
        with anyio.fail_after(10):
            try:
                while True:
                    answer += await stream.receive()
            except anyio.EndOfStream:
                pass
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized", answer[:300]
    assert b"longer than 8192 characters" in rest

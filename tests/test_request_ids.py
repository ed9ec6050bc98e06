"""Request ids: taken from X-Request-ID or a traceparent (or made), answered in X-Request-ID and in
REST error bodies, written on the request's JSON log lines and on its calls' usage records, which
still verify; a stdio call gets one of its own per JSON-RPC request."""

import json
import logging
import re
from dataclasses import dataclass

import httpx2
import pytest
from mcp import Client
from sqlalchemy import select

from kamiyo.access import accounts, keys
from kamiyo.access.meter import verify_chain
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.usage import UsageRecord
from kamiyo.mcpserver.server import build_server
from kamiyo.observability import configure_logging
from kamiyo.observability.request_context import (
    MAX_REQUEST_ID,
    request_id_for,
    safe_request_id,
    trace_id_of,
)
from kamiyo.service.running import running
from kamiyo.service.state import ServerState, default_gate
from kamiyo.tiers import Tier
from kamiyo.web.app import create_app

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
FRESH = re.compile(r"[0-9a-f]{32}")
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}
SEARCH = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "search_exploits", "arguments": {"limit": 1}},
}


@pytest.mark.parametrize(
    "given",
    ["abc-123", "0b1f0d2e-6c1a-4b7e-9f5e-3f2a1b0c9d8e", "svc.api:42_x", "Z" * MAX_REQUEST_ID],
)
def test_a_safe_request_id_is_kept(given: str) -> None:
    assert safe_request_id(given) == given
    assert request_id_for(given, TRACEPARENT) == given  # X-Request-ID wins over traceparent


@pytest.mark.parametrize(
    "given",
    ["", "two words", "line\nbreak", 'quote"d', "<script>", "-leading", "Z" * (MAX_REQUEST_ID + 1)],
)
def test_an_unsafe_request_id_is_replaced(given: str) -> None:
    assert safe_request_id(given) is None
    assert request_id_for(given, TRACEPARENT) == TRACE_ID
    assert FRESH.fullmatch(request_id_for(given, None))


@pytest.mark.parametrize(
    ("traceparent", "trace_id"),
    [
        (TRACEPARENT, TRACE_ID),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # the invalid all-zero id
        (f"ff-{TRACE_ID}-00f067aa0ba902b7-01", None),  # the forbidden version
        (f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", None),  # hex is lowercase
        ("00-abc-def-01", None),
        ("", None),
    ],
)
def test_the_trace_id_of_a_traceparent(traceparent: str, trace_id: str | None) -> None:
    assert trace_id_of(traceparent) == trace_id


def test_fresh_ids_differ() -> None:
    assert request_id_for(None, None) != request_id_for(None, None)


@dataclass
class Served:
    http: httpx2.AsyncClient
    key: str


async def _key(url: str) -> str:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            account = await accounts.create_account(session, "ids@example.com", Tier.TEAM)
            key = (await keys.create_key(session, account, "ids")).key
            await session.commit()
    finally:
        await engine.dispose()
    return key


async def _records(url: str) -> list[UsageRecord]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            found = list(await session.scalars(select(UsageRecord).order_by(UsageRecord.pk)))
            for chain in {record.chain for record in found}:
                check = await verify_chain(session, chain)
                assert check.ok, check.problem  # the ids do not disturb the chains
    finally:
        await engine.dispose()
    return found


def _settings(url: str) -> Settings:
    return Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None)


async def test_http_requests_carry_their_id_into_answers_logs_and_usage(
    empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(empty_database_url)
    app = create_app(settings, build_server, stateless=True, json_response=True)
    async with app.router.lifespan_context(app):  # which makes the schema
        auth = {"Authorization": f"Bearer {await _key(empty_database_url)}"}
        configure_logging("INFO", "json")
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.11", 40000))
        loopback = "http://127.0.0.1:8000"  # a Host the MCP endpoint's rebinding guard lets in
        async with httpx2.AsyncClient(transport=transport, base_url=loopback) as http:
            given = await http.get(
                "/api/v1/exploits", params={"limit": 1}, headers=auth | {"X-Request-ID": "rest-1"}
            )
            traced = await http.post(
                "/mcp", json=SEARCH, headers=MCP_HEADERS | auth | {"traceparent": TRACEPARENT}
            )
            unsafe = await http.get("/healthz", headers={"X-Request-ID": "evil\x7fid"})
            refused = await http.get(
                "/api/v1/exploits", headers={"Authorization": "Bearer kmy_live_nope"}
            )
            # A tool the free tier lacks, called without a credential: refused, and logged.
            anonymous = await http.post(
                "/mcp",
                json=SEARCH | {"params": {"name": "check_wallet_interactions", "arguments": {}}},
                headers=MCP_HEADERS | {"X-Request-ID": "mcp-anon-1"},
            )
    assert given.status_code == 200, given.text
    assert given.headers["X-Request-ID"] == "rest-1"
    assert traced.status_code == 200, traced.text
    assert traced.headers["X-Request-ID"] == TRACE_ID
    assert FRESH.fullmatch(unsafe.headers["X-Request-ID"])
    assert refused.status_code == 401
    assert refused.json()["error"]["request_id"] == refused.headers["X-Request-ID"]
    assert anonymous.status_code == 200

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines, "the app logged nothing"
    assert all("request_id" in line for line in lines)  # a field on every line, null outside
    refusal = [line for line in lines if "check_wallet_interactions refused" in line["message"]]
    assert [line["request_id"] for line in refusal] == ["mcp-anon-1"]

    by_id = {record.request_id: record for record in await _records(empty_database_url)}
    assert by_id["rest-1"].tool == "search_exploits"
    assert by_id[TRACE_ID].tool == "search_exploits"
    assert by_id["mcp-anon-1"].tool == "check_wallet_interactions"
    assert by_id["mcp-anon-1"].status != "ok"


async def test_each_stdio_call_gets_an_id_of_its_own(empty_database_url: str) -> None:
    """In-memory MCP, as on stdio: no HTTP request, so one id per tools/call."""
    settings = _settings(empty_database_url)
    state = ServerState(settings=settings, gate=default_gate(settings))
    async with running(state), Client(build_server(state)) as client:
        state.stdio_credential = await _key(empty_database_url)
        for _ in range(2):
            result = await client.call_tool("search_exploits", {"limit": 1})
            assert not result.is_error
    ids = [record.request_id for record in await _records(empty_database_url)]
    assert len(ids) == 2
    assert all(isinstance(i, str) and FRESH.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]


def test_a_record_given_a_request_id_as_an_extra_keeps_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("kamiyo.test").info("explicit", extra={"request_id": "given-1"})
    logging.getLogger("kamiyo.test").info("outside")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["request_id"] == "given-1"
    assert second["request_id"] is None

"""Calls with bad arguments, over MCP on the account gate: refused with one line that says
what to fix, and still counted against the caller's limits and recorded (status invalid)."""

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.meter import ANONYMOUS_CHAIN, chain_of
from kamiyo.db.usage import UsageRecord
from kamiyo.mcpserver.server import build_server
from kamiyo.payments.cashier import open_cashier
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from kamiyo.tiers import Tier
from tests.mcpserver.test_shapes import pay_per_call_settings
from tests.mcpserver.test_tools import text_of

pytestmark = pytest.mark.anyio

Sessions = async_sessionmaker[AsyncSession]


@asynccontextmanager
async def serving(
    runtime: Runtime, *, credential: str | None = None, paying: bool = False
) -> AsyncIterator[tuple[Client, AccountGate]]:
    """An in-memory MCP client on a fresh account gate (its own limiter) over ``runtime``."""
    settings = runtime.settings.with_changes(auth={"tier_cache_s": 0}, answers={"cache_ttl_s": 0})
    cashier = None
    if paying:
        settings = pay_per_call_settings(runtime)
        cashier = open_cashier(settings.x402, secret_key=settings.auth.secret_key, upgrade_url=None)
    gate = AccountGate(settings, cashier)
    state = ServerState(settings=settings, gate=gate, runtime=runtime, stdio_credential=credential)
    async with gate.serving(runtime.sessions), Client(build_server(state)) as client:
        yield client, gate


async def new_key(sessions: Sessions, tier: Tier) -> tuple[int, str]:
    async with sessions() as session:
        account = await accounts.create_account(
            session, f"invalid-{tier.value}-{dt.datetime.now().timestamp()}@example.com", tier
        )
        new = await keys.create_key(session, account, "invalid calls")
        await session.commit()
        return account.pk, new.key


async def recorded(
    sessions: Sessions, chain: str, since: dt.datetime
) -> list[tuple[str, str, str]]:
    """(tool, tier, status) of each usage record of ``chain`` since ``since``, in order."""
    async with sessions() as session:
        rows = await session.execute(
            select(UsageRecord.tool, UsageRecord.tier, UsageRecord.status)
            .where(UsageRecord.chain == chain, UsageRecord.at >= since)
            .order_by(UsageRecord.seq)
        )
        return [(tool, tier, status) for tool, tier, status in rows]


def _problem(result: Any) -> tuple[str, str]:
    assert result.is_error is True
    assert result.structured_content is not None
    message = text_of(result)
    assert "\n" not in message
    return result.structured_content["error"], message


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("get_exploit", {"exploit_id": "a\x00b"}, "exploit_id: must not contain a NUL"),
        ("get_exploit", {"exploit_id": "a\ud800b"}, "exploit_id: must not contain a lone"),
        ("search_exploits", {"query": "eu\x00ler"}, "query: must not contain a NUL"),
        ("assess_protocol_risk", {"protocol_name": "eul\x00er"}, "protocol_name: must not"),
        ("search_exploits", {"limit": True}, "limit: must be a number, not true or false"),
        ("search_exploits", {"min_loss_usd": "Infinity"}, "min_loss_usd: Input should be a fin"),
    ],
)
async def test_unstorable_text_and_lenient_values_are_refused_on_every_backend(
    loaded_runtime: Runtime, tool: str, arguments: dict[str, Any], problem: str
) -> None:
    """On PostgreSQL a NUL in exploit_id was an internal error with a traceback."""
    _, key = await new_key(loaded_runtime.sessions, Tier.ENTERPRISE)
    async with serving(loaded_runtime, credential=key) as (client, _):
        error, message = _problem(await client.call_tool(tool, arguments))
    assert error == "invalid_arguments"
    assert message.startswith(f"Invalid arguments for {tool}: ")
    assert problem in message


async def test_invalid_calls_count_against_the_limits_and_are_recorded(
    loaded_runtime: Runtime,
) -> None:
    account_pk, key = await new_key(loaded_runtime.sessions, Tier.PERSONAL)  # 30 a minute
    since = dt.datetime.now(dt.UTC)
    async with serving(loaded_runtime, credential=key) as (client, gate):
        answers = [
            _problem(await client.call_tool("search_exploits", {"limit": "abc"})) for _ in range(31)
        ]
        await gate.meter.flush()
    assert [error for error, _ in answers] == ["invalid_arguments"] * 30 + ["rate_limited"]
    assert "Invalid arguments for search_exploits: limit:" in answers[0][1]
    assert "Rate limit reached" in answers[-1][1]
    rows = await recorded(loaded_runtime.sessions, chain_of(account_pk), since)
    assert rows == [("search_exploits", "personal", "invalid")] * 30 + [
        ("search_exploits", "personal", "rate_limited")
    ]


async def test_anonymous_invalid_calls_and_unknown_tools_are_counted_by_peer(
    loaded_runtime: Runtime,
) -> None:
    since = dt.datetime.now(dt.UTC)
    async with serving(loaded_runtime) as (client, gate):  # the free tier: 10 a minute
        answers = [
            _problem(await client.call_tool("get_exploit", {"exploit_id": 7})) for _ in range(5)
        ]
        for name in ["no_such_tool"] * 3 + ["no_such_tool_" + "x" * 10_000] * 3:
            answers.append(_problem(await client.call_tool(name, {})))
        await gate.meter.flush()
    assert [error for error, _ in answers] == ["invalid_arguments"] * 10 + ["rate_limited"]
    assert answers[5][1].startswith("Unknown tool: no_such_tool. Tools: ")
    assert answers[8][1].startswith("Tool names are at most 128 characters")
    rows = await recorded(loaded_runtime.sessions, ANONYMOUS_CHAIN, since)
    assert rows == (
        [("get_exploit", "free", "invalid")] * 5
        + [("(unknown)", "free", "invalid")] * 5
        + [("(unknown)", "free", "rate_limited")]
    )


async def test_with_pay_per_call_an_invalid_call_asks_no_payment_and_is_counted(
    loaded_runtime: Runtime,
) -> None:
    since = dt.datetime.now(dt.UTC)
    async with serving(loaded_runtime, paying=True) as (client, gate):
        unpaid = await client.call_tool("get_exploit", {"exploit_id": "20230313_eulerfinance"})
        assert unpaid.structured_content is not None
        assert unpaid.structured_content["x402Version"] == 2  # a valid call is asked to pay
        # The arguments of paying by transfer are checked like the others.
        transfer = {"exploit_id": "20230313_eulerfinance", "x402_payment_signature": "a\x00"}
        answers = [_problem(await client.call_tool("get_exploit", transfer))]
        answers += [
            _problem(await client.call_tool("get_exploit", {"exploit_id": "a\x00b"}))
            for _ in range(10)
        ]
        await gate.meter.flush()
    assert "x402_payment_signature: must not contain a NUL" in answers[0][1]
    # The free tier's 10 a minute, by address: the unpaid call was not counted, these were.
    assert [error for error, _ in answers] == ["invalid_arguments"] * 10 + ["rate_limited"]
    rows = await recorded(loaded_runtime.sessions, ANONYMOUS_CHAIN, since)
    assert rows == (
        [("get_exploit", "none", "payment_required")]
        + [("get_exploit", "free", "invalid")] * 10
        + [("get_exploit", "free", "rate_limited")]
    )


async def test_a_bad_credential_wins_over_bad_arguments(loaded_runtime: Runtime) -> None:
    for credential in ("kmy_live_" + "x" * 43, "kmy_live_\udcff" + "x" * 40, "not\ud800a.jwt"):
        async with serving(loaded_runtime, credential=credential) as (client, _):
            error, message = _problem(await client.call_tool("search_exploits", {"limit": "abc"}))
            assert error == "unauthenticated", message


async def test_when_the_gate_cannot_count_an_invalid_call_it_is_unavailable(
    loaded_runtime: Runtime,
) -> None:
    gate = AccountGate(loaded_runtime.settings)  # never bound to a database: identify raises
    state = ServerState(
        settings=loaded_runtime.settings,
        gate=gate,
        runtime=loaded_runtime,
        stdio_credential="kmy_live_" + "b" * 43,
    )
    async with Client(build_server(state)) as client:
        error, message = _problem(await client.call_tool("search_exploits", {"limit": "abc"}))
    assert error == "temporarily_unavailable"
    assert message == "search_exploits is temporarily unavailable; try again shortly."

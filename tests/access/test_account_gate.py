"""The subscription gate, on its own and in front of the real tools."""

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from mcp import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys, tokens
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Call, Grant, Refusal
from kamiyo.config import AuthSettings, Settings
from kamiyo.db.tables import Subscription
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.service.catalogue import target
from kamiyo.service.state import ServerState
from kamiyo.tiers import Tier

pytestmark = pytest.mark.anyio


@pytest.fixture
def sessions(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    return migrated_sessions


SETTINGS = Settings(auth=AuthSettings(secret_key="g" * 48, tier_cache_s=0), _env_file=None)


async def _key(sessions: async_sessionmaker[AsyncSession], email: str, tier: Tier) -> str:
    async with sessions() as session:
        account = await accounts.create_account(session, email, tier)
        new = await keys.create_key(session, account, "test")
        await session.commit()
        return new.key


GateFactory = Callable[..., Awaitable[AccountGate]]


@pytest.fixture
async def make_gate(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[GateFactory]:
    """Serving gates with SETTINGS changed by section; stopped (and flushed) after the test."""
    async with AsyncExitStack() as stack:

        async def make(**sections: dict[str, object]) -> AccountGate:
            gate = AccountGate(SETTINGS.with_changes(**sections))
            await stack.enter_async_context(gate.serving(sessions))
            return gate

        yield make


async def test_anonymous_callers_get_the_free_tier(
    sessions: async_sessionmaker[AsyncSession],
    make_gate: GateFactory,
) -> None:
    gate = await make_gate()
    grant = await gate.admit(Call(target("search_exploits")))
    assert isinstance(grant, Grant)
    assert (grant.tier, grant.max_results) == ("free", 10)
    assert grant.hide_after is not None
    assert grant.hide_after <= dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    locked = await gate.admit(Call(target("assess_protocol_risk")))
    assert isinstance(locked, Refusal)
    assert locked.reason == "forbidden"
    assert "needs the personal tier" in locked.message
    assert locked.details()["required_tier"] == "personal"


async def test_anonymous_access_can_be_turned_off(
    sessions: async_sessionmaker[AsyncSession],
    make_gate: GateFactory,
) -> None:
    refusal = await (await make_gate(auth={"allow_anonymous": False})).admit(
        Call(target("search_exploits"))
    )
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "unauthenticated"


async def test_tiers_unlock_tools_and_raise_caps(
    sessions: async_sessionmaker[AsyncSession],
    make_gate: GateFactory,
) -> None:
    gate = await make_gate(site={"upgrade_url": "https://kamiyo.test/pricing"})
    personal = await _key(sessions, "p@example.com", Tier.PERSONAL)
    team = await _key(sessions, "t@example.com", Tier.TEAM)
    grant = await gate.admit(Call(target("assess_protocol_risk"), credential=personal))
    assert isinstance(grant, Grant)
    assert (grant.tier, grant.max_results, grant.hide_after) == ("personal", 50, None)
    wallet = await gate.admit(Call(target("check_wallet_interactions"), credential=personal))
    assert isinstance(wallet, Refusal)
    assert "needs the team tier" in wallet.message
    assert "https://kamiyo.test/pricing" in wallet.message
    grant = await gate.admit(Call(target("check_wallet_interactions"), credential=team))
    assert isinstance(grant, Grant)
    assert grant.max_results == 200


async def test_upgrades_and_cancellations_apply_on_the_next_call(
    sessions: async_sessionmaker[AsyncSession],
    make_gate: GateFactory,
) -> None:
    gate = await make_gate()
    key = await _key(sessions, "u@example.com", Tier.PERSONAL)
    async with sessions() as session:
        account = await accounts.find_account(session, "u@example.com")
        assert account is not None
        subscription = await session.get(Subscription, account.pk)
        assert subscription is not None
        subscription.tier = Tier.TEAM.value
        await session.commit()
        assert isinstance(await gate.admit(Call(target("check_wallet_interactions"), key)), Grant)
        subscription.status = "canceled"
        await session.commit()
    refused = await gate.admit(Call(target("assess_protocol_risk"), key))
    assert isinstance(refused, Refusal)
    assert "on free" in refused.message


@pytest.mark.parametrize(
    "credential",
    [
        "kmy_live_forged",
        "not-a-jwt",
        "x" * 100_000,
        "kmy_live_" + "a" * 43,
        # What no database can be asked about (a key from an environment holding bad bytes).
        "kmy_live_\x00" + "a" * 42,
        "kmy_live_\udcff" + "a" * 42,
        "eyJ\ud800.e30.sig",
        "a\x00b",
    ],
)
async def test_bad_credentials_are_refused(
    sessions: async_sessionmaker[AsyncSession], make_gate: GateFactory, credential: str
) -> None:
    refusal = await (await make_gate()).admit(
        Call(target("search_exploits"), credential=credential)
    )
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "unauthenticated"
    assert credential[:20] not in refusal.message


async def test_tokens_identify_too(
    sessions: async_sessionmaker[AsyncSession], make_gate: GateFactory
) -> None:
    async with sessions() as session:
        account = await accounts.create_account(session, "jwt@example.com", Tier.ENTERPRISE)
        await session.commit()
        token = await tokens.issue_token(session, SETTINGS.auth, account)
    gate = await make_gate()
    grant = await gate.admit(Call(target("check_wallet_interactions"), credential=token))
    assert isinstance(grant, Grant)
    assert grant.tier == "enterprise"


async def test_the_tools_behind_the_gate(loaded_runtime: Runtime) -> None:
    """Through the MCP server: the free tier is capped and delayed; a key lifts both."""
    settings = loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0})
    gate = AccountGate(settings)
    anonymous = ServerState(settings=settings, gate=gate, runtime=loaded_runtime)
    async with gate.serving(loaded_runtime.sessions), Client(build_server(anonymous)) as client:
        free = await client.call_tool("search_exploits", {"limit": 100})
        locked = await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
    assert free.structured_content is not None
    assert free.structured_content["limit"] == 10
    assert locked.is_error is True
    # Said in structuredContent itself: some hosts show the model nothing else.
    refused = locked.structured_content
    assert refused is not None
    assert (refused["error"], refused["required_tier"], refused["current_tier"]) == (
        "forbidden",
        "personal",
        "free",
    )
    assert "needs the personal tier" in refused["message"]

    key = await _key(loaded_runtime.sessions, "gate-e2e@example.com", Tier.PERSONAL)
    paid = ServerState(settings=settings, gate=gate, runtime=loaded_runtime, stdio_credential=key)
    async with gate.serving(loaded_runtime.sessions), Client(build_server(paid)) as client:
        result = await client.call_tool("search_exploits", {"limit": 100})
        unlocked = await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
    assert result.structured_content is not None
    assert result.structured_content["limit"] == 50
    assert unlocked.is_error is not True


async def test_a_failing_gate_refuses_without_leaking_the_cause(loaded_runtime: Runtime) -> None:
    gate = AccountGate(loaded_runtime.settings)  # never bound to a database: admit raises
    state = ServerState(
        settings=loaded_runtime.settings,
        gate=gate,
        runtime=loaded_runtime,
        stdio_credential="kmy_live_" + "b" * 43,
    )
    async with Client(build_server(state)) as client:
        result = await client.call_tool("search_exploits", {"query": "ronin"})
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    assert text == "search_exploits is temporarily unavailable; try again shortly."


async def test_get_usage_reports_the_limits_and_what_is_used(loaded_runtime: Runtime) -> None:
    settings = loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0})
    gate = AccountGate(settings)
    key = await _key(loaded_runtime.sessions, "usage-tool@example.com", Tier.PERSONAL)
    paid = ServerState(settings=settings, gate=gate, runtime=loaded_runtime, stdio_credential=key)
    anonymous = ServerState(settings=settings, gate=gate, runtime=loaded_runtime)
    async with gate.serving(loaded_runtime.sessions):
        async with Client(build_server(paid)) as client:
            for _ in range(3):
                await client.call_tool("search_exploits", {"query": "euler"})
            usage = (await client.call_tool("get_usage", {})).structured_content
        async with Client(build_server(anonymous)) as client:
            free = (await client.call_tool("get_usage", {})).structured_content
    assert usage is not None
    assert (usage["tier"], usage["max_results"]) == ("personal", 50)
    assert usage["minute"]["limit"] == 30
    assert (usage["minute"]["used"], usage["minute"]["remaining"]) == (4, 26)  # with itself
    assert (usage["day"]["limit"], usage["day"]["used"]) == (1000, 4)
    # Calls answered this month; get_usage's own call is metered after it answers.
    assert (usage["month"]["calls"], usage["month"]["cost_units"]) == (3, 3)
    assert free is not None
    assert (free["tier"], free["minute"]["limit"], free["month"]) == ("free", 10, None)


async def test_enterprise_risk_answers_carry_recommendations(loaded_runtime: Runtime) -> None:
    settings = loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0})
    gate = AccountGate(settings)
    answers = {}
    async with gate.serving(loaded_runtime.sessions):
        for tier in (Tier.PERSONAL, Tier.ENTERPRISE):
            key = await _key(loaded_runtime.sessions, f"risk-{tier.value}@example.com", tier)
            state = ServerState(
                settings=settings, gate=gate, runtime=loaded_runtime, stdio_credential=key
            )
            async with Client(build_server(state)) as client:
                result = await client.call_tool("assess_protocol_risk", {"protocol_name": "Euler"})
            assert result.structured_content is not None
            answers[tier] = result.structured_content
    assert answers[Tier.PERSONAL]["recommendations"] is None
    detailed = answers[Tier.ENTERPRISE]["recommendations"]
    assert detailed
    assert sum(r["incidents"] for r in detailed) == answers[Tier.ENTERPRISE]["incident_count"]
    assert all(r["checks"] for r in detailed)

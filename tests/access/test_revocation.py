"""Changes to credentials apply on the next call (access/revocation.py), on both databases,
with and without Redis. The cache lives an hour here, so only the version check can be the
reason a change is seen."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio
from pydantic import SecretStr
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys, revocation, tokens
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Identity, Refusal
from kamiyo.config import Settings
from kamiyo.db.tables import Account, ApiKey
from kamiyo.tiers import Tier
from tests.billing.test_webhooks import deliver, make_settings, subscription_event

pytestmark = pytest.mark.anyio

Sessions = async_sessionmaker[AsyncSession]
AUTH = {"secret_key": SecretStr("r" * 48), "tier_cache_s": 3600.0}


@pytest.fixture(params=["database", "redis"])
def settings(request: pytest.FixtureRequest) -> Settings:
    redis: dict[str, Any] = {}
    if request.param == "redis":
        redis = request.getfixturevalue("redis_settings")
    return make_settings(auth=AUTH, redis=redis)


GateFactory = Callable[[], Awaitable[AccountGate]]


@pytest.fixture
async def gates(migrated_sessions: Sessions, settings: Settings) -> AsyncIterator[GateFactory]:
    """Serving gates (each its own cache, as on separate instances) on one database."""
    async with AsyncExitStack() as stack:

        async def make() -> AccountGate:
            gate = AccountGate(settings)
            await stack.enter_async_context(gate.serving(migrated_sessions))
            return gate

        yield make


async def _account_with_key(sessions: Sessions, email: str, tier: Tier) -> tuple[int, str]:
    async with sessions() as session:
        account = await accounts.create_account(session, email, tier)
        new = await keys.create_key(session, account, "test")
        await session.commit()
        return account.pk, new.key


async def _tier(gate: AccountGate, credential: str) -> str:
    found = await gate.identify(credential)
    return found.tier.value if isinstance(found, Identity) else f"refused: {found.message}"


async def test_a_revoked_key_is_refused_on_the_next_call_by_every_gate(
    migrated_sessions: Sessions, settings: Settings, gates: GateFactory
) -> None:
    first, second = await gates(), await gates()
    _, key = await _account_with_key(migrated_sessions, "rev@example.com", Tier.TEAM)
    _, other = await _account_with_key(migrated_sessions, "keep@example.com", Tier.TEAM)
    for gate in (first, second):
        assert await _tier(gate, key) == await _tier(gate, other) == "team"
    async with migrated_sessions() as session:
        assert await keys.revoke_key(session, key[:17]) is not None
        assert await revocation.commit(session, settings)
    for gate in (first, second):
        assert await _tier(gate, key) == "refused: Unknown or revoked API key."
        assert await _tier(gate, other) == "team"  # other accounts keep their cache entries


async def test_without_the_version_bump_the_cache_would_have_answered(
    migrated_sessions: Sessions, gates: GateFactory
) -> None:
    """The control for the test above: a revocation written behind the mechanism's back is
    not seen while the cache entry lives, so the refusals above come from the version."""
    gate = await gates()
    _, key = await _account_with_key(migrated_sessions, "sly@example.com", Tier.PERSONAL)
    assert await _tier(gate, key) == "personal"
    async with migrated_sessions() as session:
        await session.execute(update(ApiKey).values(revoked_at=ApiKey.created_at))
        await session.commit()
    assert await _tier(gate, key) == "personal"
    assert await _tier(await gates(), key) == "refused: Unknown or revoked API key."


async def test_disabling_refuses_keys_and_tokens_and_enabling_restores_them(
    migrated_sessions: Sessions, settings: Settings, gates: GateFactory
) -> None:
    gate = await gates()
    pk, key = await _account_with_key(migrated_sessions, "off@example.com", Tier.PERSONAL)
    async with migrated_sessions() as session:
        account = await session.get(Account, pk)
        assert account is not None
        token = await tokens.issue_token(session, settings.auth, account)
    assert await _tier(gate, key) == await _tier(gate, token) == "personal"
    for status, expected in [
        (accounts.AccountStatus.DISABLED, f"refused: {accounts.DISABLED_MESSAGE}"),
        (accounts.AccountStatus.ACTIVE, "personal"),
    ]:
        async with migrated_sessions() as session:
            account = await session.get(Account, pk)
            assert account is not None
            assert await accounts.set_status(session, account, status)
            assert not await accounts.set_status(session, account, status)  # no second bump
            await revocation.commit(session, settings)
        assert await _tier(gate, key) == await _tier(gate, token) == expected


async def test_a_disabled_account_gets_a_401_that_says_so(
    migrated_sessions: Sessions, settings: Settings, gates: GateFactory
) -> None:
    pk, key = await _account_with_key(migrated_sessions, "shut@example.com", Tier.FREE)
    async with migrated_sessions() as session:
        account = await session.get(Account, pk)
        assert account is not None
        await accounts.set_status(session, account, accounts.AccountStatus.DISABLED)
        await revocation.commit(session, settings)
    refusal = await (await gates()).identify(key)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "unauthenticated"
    assert refusal.message == "This account is disabled; contact the operator."


async def test_a_revoked_token_is_refused_on_the_next_call(
    migrated_sessions: Sessions, settings: Settings, gates: GateFactory
) -> None:
    gate = await gates()
    pk, _ = await _account_with_key(migrated_sessions, "jwt@example.com", Tier.TEAM)
    async with migrated_sessions() as session:
        account = await session.get(Account, pk)
        assert account is not None
        token = await tokens.issue_token(session, settings.auth, account)
        spare = await tokens.issue_token(session, settings.auth, account)
    assert await _tier(gate, token) == await _tier(gate, spare) == "team"
    async with migrated_sessions() as session:
        await tokens.revoke_token(session, settings.auth, token)
        await revocation.commit(session, settings)
    assert await _tier(gate, token) == "refused: Access token refused: token revoked."
    assert await _tier(gate, spare) == "team"


async def test_a_tier_set_by_hand_applies_on_the_next_call_and_is_marked(
    migrated_sessions: Sessions, settings: Settings, gates: GateFactory
) -> None:
    gate = await gates()
    pk, key = await _account_with_key(migrated_sessions, "comp@example.com", Tier.FREE)
    assert await _tier(gate, key) == "free"
    async with migrated_sessions() as session:
        account = await session.get(Account, pk)
        assert account is not None
        row = await accounts.set_tier(session, account, Tier.ENTERPRISE)
        assert row.tier_source == accounts.TierSource.OPERATOR
        await revocation.commit(session, settings)
    assert await _tier(gate, key) == "enterprise"
    async with migrated_sessions() as session:
        listed = await accounts.list_accounts(session, tier=Tier.ENTERPRISE)
    assert [(a.email, a.tier_source) for a in listed] == [
        ("comp@example.com", accounts.TierSource.OPERATOR)
    ]


async def test_a_stripe_change_over_a_hand_set_tier_applies_and_warns(
    migrated_sessions: Sessions,
    settings: Settings,
    gates: GateFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the webhook handler: the change commits, is announced, and the gate sees it."""
    gate = await gates()
    pk, key = await _account_with_key(migrated_sessions, "vip@example.com", Tier.ENTERPRISE)
    assert await _tier(gate, key) == "enterprise"
    event = subscription_event("created", pk, created=1_760_000_000, tier="personal")
    with caplog.at_level(logging.INFO, logger="kamiyo.billing.subscriptions"):
        result = await deliver(migrated_sessions, event, settings)
    assert result.accepted, result.message
    assert await _tier(gate, key) == "personal"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"account {pk} had the enterprise tier set by hand" in warnings[0]
    assert "gives personal now" in warnings[0]
    assert "vip@example.com" not in warnings[0]
    async with migrated_sessions() as session:
        (listed,) = await accounts.list_accounts(session)
    assert listed.tier_source == accounts.TierSource.STRIPE
    # The redelivery changes nothing, so nothing is bumped or logged again.
    caplog.clear()
    assert (await deliver(migrated_sessions, event, settings)).duplicate
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_stripe_change_applies_on_the_next_call(
    migrated_sessions: Sessions, settings: Settings, gates: GateFactory
) -> None:
    gate = await gates()
    pk, key = await _account_with_key(migrated_sessions, "pay@example.com", Tier.FREE)
    assert await _tier(gate, key) == "free"
    event = subscription_event("created", pk, created=1_760_000_000, tier="team")
    assert (await deliver(migrated_sessions, event, settings)).accepted
    assert await _tier(gate, key) == "team"
    event = subscription_event("deleted", pk, created=1_760_000_100, tier="team")
    assert (await deliver(migrated_sessions, event, settings)).accepted
    assert await _tier(gate, key) == "free"


async def test_announcements_only_ever_raise_the_version(
    migrated_sessions: Sessions, redis_settings: dict[str, str]
) -> None:
    """Two writers finishing in either order leave the newer version in Redis."""
    settings = make_settings(auth=AUTH, redis=redis_settings)
    pk, _ = await _account_with_key(migrated_sessions, "order@example.com", Tier.FREE)
    key = f"{redis_settings['prefix']}:credentials:{pk}"
    client = redis.asyncio.Redis.from_url(redis_settings["url"])
    try:
        async with migrated_sessions() as session:
            await revocation.bump(session, pk)
            await revocation.bump(session, pk)
            assert await revocation.commit(session, settings)
        assert await client.get(key) == b"2"
        await client.set(key, 7)  # a later writer announced already
        async with migrated_sessions() as session:
            assert await revocation.announce(session, settings, [pk])
        assert await client.get(key) == b"7"
    finally:
        await client.aclose()


async def test_with_redis_down_the_gate_reads_the_database_and_the_writer_says_so(
    migrated_sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.mcpserver.conftest import free_port

    settings = make_settings(auth=AUTH, redis={"url": f"redis://127.0.0.1:{free_port()}/0"})
    async with AsyncExitStack() as stack:
        gate = AccountGate(settings)
        await stack.enter_async_context(gate.serving(migrated_sessions))
        _, key = await _account_with_key(migrated_sessions, "down@example.com", Tier.TEAM)
        assert await _tier(gate, key) == "team"
        async with migrated_sessions() as session:
            await keys.revoke_key(session, key[:17])
            with caplog.at_level(logging.ERROR):
                assert not await revocation.commit(session, settings)
        assert "Redis unreachable" in caplog.text
        assert await _tier(gate, key) == "refused: Unknown or revoked API key."


def _version_reads(sessions: Sessions) -> list[str]:
    """The credentials-version reads the engine under ``sessions`` runs from now on."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        if "credentials_version" in args[2] and args[2].lstrip().upper().startswith("SELECT"):
            seen.append(args[2])

    event.listen(sessions.kw["bind"].sync_engine, "before_cursor_execute", count)
    return seen


async def test_concurrent_checks_of_one_account_share_a_read_begun_after_they_asked(
    migrated_sessions: Sessions,
) -> None:
    """Ten calls at once: the first reads; the nine that asked while it ran share the next
    read (begun after they asked, so it saw every commit before them), not one each."""
    versions = revocation.CredentialVersions(make_settings(auth=AUTH))
    pk, _ = await _account_with_key(migrated_sessions, "many@example.com", Tier.TEAM)
    async with migrated_sessions() as session:
        version = (await session.get_one(Account, pk)).credentials_version
    reads = _version_reads(migrated_sessions)
    try:
        answers = await asyncio.gather(
            *(versions.moved(migrated_sessions, pk, version) for _ in range(10))
        )
        assert answers == [False] * 10
        # One when all asked before the first read began (its connection opened first).
        assert 1 <= len(reads) <= 2
        done = len(reads)
        async with migrated_sessions() as session:
            await revocation.bump(session, pk)
            await session.commit()
        # Asked after that read ended and after the bump: read again, and moved.
        assert await versions.moved(migrated_sessions, pk, version)
        assert len(reads) == done + 1
    finally:
        await versions.close()

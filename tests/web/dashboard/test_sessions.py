"""The session table on SQLite and PostgreSQL: only a hash is stored, sessions end by time
(absolute and idle) and by log-out; and the log-in limits are shared through Redis."""

import datetime as dt

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts
from kamiyo.access.one_time_links import hash_token
from kamiyo.config import RedisSettings, SiteSettings
from kamiyo.db.dashboard import DashboardSession
from kamiyo.web.dashboard import sessions
from kamiyo.web.dashboard.throttle import LOGINS_PER_PEER, LoginLimits

pytestmark = pytest.mark.anyio

Sessions = async_sessionmaker[AsyncSession]


async def set_times(db: Sessions, **times: dt.datetime) -> None:
    async with db() as session:
        await session.execute(update(DashboardSession).values(**times))
        await session.commit()


async def test_sessions_are_stored_hashed_and_end_by_time_and_log_out(
    migrated_sessions: Sessions,
) -> None:
    async with migrated_sessions() as session:
        account = await accounts.create_account(session, "table@example.com")
        await session.commit()
    live = await sessions.start(migrated_sessions, account.pk)
    async with migrated_sessions() as session:
        [row] = await session.scalars(select(DashboardSession))
    assert row.token_hash == hash_token(live.token) != live.token
    assert row.expires_at == live.expires_at
    found = await sessions.find(migrated_sessions, live.token)
    assert found is not None
    assert found.account_pk == account.pk
    assert await sessions.find(migrated_sessions, live.token[:-1] + "!") is None
    assert await sessions.find(migrated_sessions, None) is None

    now = dt.datetime.now(dt.UTC)
    await set_times(migrated_sessions, last_seen=now - dt.timedelta(minutes=5))
    assert await sessions.find(migrated_sessions, live.token) is not None
    async with migrated_sessions() as session:  # used again: last_seen moved on
        touched = await session.scalar(select(DashboardSession.last_seen))
    assert touched is not None
    assert touched > now - dt.timedelta(minutes=1)

    await set_times(migrated_sessions, last_seen=now - sessions.IDLE_LIMIT)
    assert await sessions.find(migrated_sessions, live.token) is None
    async with migrated_sessions() as session:
        assert list(await session.scalars(select(DashboardSession))) == []

    second = await sessions.start(migrated_sessions, account.pk)
    await set_times(migrated_sessions, expires_at=now)
    assert await sessions.find(migrated_sessions, second.token) is None

    third = await sessions.start(migrated_sessions, account.pk)
    await sessions.end(migrated_sessions, third.token)
    assert await sessions.find(migrated_sessions, third.token) is None


async def test_log_in_limits_are_shared_by_instances_through_redis(
    redis_settings: dict[str, str],
) -> None:
    shared = RedisSettings(
        url=redis_settings["url"], prefix=redis_settings["prefix"], _env_file=None
    )
    one, two = LoginLimits(shared), LoginLimits(shared)
    try:
        for n in range(LOGINS_PER_PEER.amount):
            assert await (one if n % 2 else two).peer_wait("203.0.113.9") is None
        wait = await one.peer_wait("203.0.113.9")
        assert wait is not None
        assert 1 <= wait <= 60
        assert await two.peer_wait("203.0.113.9") is not None
        assert await two.peer_wait("203.0.113.10") is None  # another peer has its own count
    finally:
        await one.aclose()
        await two.aclose()


async def test_log_in_limits_fall_back_to_this_process_while_redis_is_away() -> None:
    limits = LoginLimits(
        RedisSettings(url="redis://127.0.0.1:1/0", prefix="kamiyo_away", _env_file=None)
    )
    try:
        for _ in range(LOGINS_PER_PEER.amount):
            assert await limits.peer_wait("203.0.113.11") is None
        assert await limits.peer_wait("203.0.113.11") is not None
    finally:
        await limits.aclose()


@pytest.mark.parametrize(
    ("public_url", "secure"),
    [
        ("https://kamiyo.example", True),
        ("http://kamiyo.example", True),  # plain http off loopback: still Secure
        ("http://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
        ("http://[::1]:8000", False),
        (None, True),
    ],
)
def test_the_cookie_is_secure_except_over_plain_http_on_loopback(
    public_url: str | None, secure: bool
) -> None:
    site = SiteSettings(public_url=public_url, _env_file=None)
    assert sessions.cookie_is_secure(site) is secure

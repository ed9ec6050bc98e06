"""The serving process prunes OAuth state on its own, every ``oauth_prune_every_s``; a failed
run is logged and the next one tries again."""

import asyncio
import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, oauth_grants
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.oauth import OAuthCode
from kamiyo.tiers import Tier
from kamiyo.web.oauth_pruning import prune_once
from tests.conftest import PostgresDatabases, new_database_url
from tests.web.oauth_helpers import MCP_URL, oauth_settings, serving_host

pytestmark = pytest.mark.anyio


async def _expired_code(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions() as session:
        account = await accounts.create_account(session, "prune@example.com", Tier.FREE)
        request = oauth_grants.CodeRequest(
            account.pk, "host", "Host", "https://host.example/cb", True, "c" * 43, MCP_URL, []
        )
        raw = await oauth_grants.create_code(session, request)
        code = await oauth_grants.find_code(session, raw)
        assert code is not None
        code.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        await session.commit()
        return code.code_hash


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_serving_instance_deletes_expired_codes_by_itself(
    backend: str, tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    url = await new_database_url(backend, tmp_path, postgres_databases)
    async with serving_host(url, oauth_prune_every_s=0.2):
        engine = create_engine(url)
        try:
            sessions = session_factory(engine)
            code_hash = await _expired_code(sessions)
            for _ in range(100):
                await asyncio.sleep(0.05)
                async with sessions() as session:
                    if (
                        await session.scalar(
                            select(OAuthCode).where(OAuthCode.code_hash == code_hash)
                        )
                        is None
                    ):
                        break
            else:
                pytest.fail("the expired code was never pruned")
        finally:
            await engine.dispose()


async def test_a_failed_run_is_logged_and_returns_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = oauth_settings(f"sqlite+aiosqlite:///{tmp_path}/never-migrated.db")
    engine = create_engine(settings.database.resolved_url)
    try:
        with caplog.at_level(logging.ERROR, "kamiyo.web.oauth_pruning"):
            assert await prune_once(settings, lambda: session_factory(engine)) is None
    finally:
        await engine.dispose()
    assert "OAuth clean-up failed; the next run tries again" in caplog.text

"""OAuth clean-up on SQLite and PostgreSQL: expired and revoked codes and tokens and stale
clients go; live grants, their tokens and the retired refresh tokens that guard them stay."""

import datetime as dt

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, oauth_cleanup, oauth_grants
from kamiyo.config import AuthSettings
from kamiyo.db.oauth import OAuthAccessToken, OAuthClient, OAuthCode, OAuthGrant, OAuthRefreshToken
from kamiyo.tiers import Tier

pytestmark = pytest.mark.anyio

AUTH = AuthSettings(_env_file=None)
RESOURCE = "https://kamiyo.example/mcp"
DAY = dt.timedelta(days=1)


def _request(account_pk: int, client_id: str) -> oauth_grants.CodeRequest:
    return oauth_grants.CodeRequest(
        account_pk, client_id, client_id, "https://host.example/cb", True, "c" * 43, RESOURCE, []
    )


async def _granted(session: AsyncSession, account_pk: int, client_id: str) -> str:
    """A grant made through a code, as the token endpoint does; its refresh token."""
    code = await oauth_grants.find_code(
        session, await oauth_grants.create_code(session, _request(account_pk, client_id))
    )
    assert code is not None
    return (await oauth_grants.exchange_code(session, AUTH, code)).refresh_token


def _client(client_id: str, age: dt.timedelta) -> OAuthClient:
    return OAuthClient(
        client_id=client_id,
        secret_hash=None,
        client_metadata={"redirect_uris": ["https://host.example/cb"]},
        created_at=dt.datetime.now(dt.UTC) - age,
    )


async def _count(session: AsyncSession, table: type[object]) -> int:
    return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_prune_deletes_only_what_no_live_grant_needs(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = dt.datetime.now(dt.UTC)
    async with migrated_sessions() as session:
        account = await accounts.create_account(session, "prune@example.com", Tier.TEAM)
        pk = account.pk
        # A live grant, refreshed once: its first refresh token is retired but still kept.
        first = await _granted(session, pk, "live")
        found = await oauth_grants.find_refresh(session, first)
        assert found is not None
        second = (await oauth_grants.rotate_refresh(session, AUTH, *found)).refresh_token
        # A revoked grant: its access and refresh tokens have nothing left to do.
        await _granted(session, pk, "gone")
        gone = await session.scalar(select(OAuthGrant).where(OAuthGrant.client_id == "gone"))
        assert gone is not None
        await oauth_grants.revoke_grant(session, gone)
        # A code nobody exchanged, expired; another one still pending.
        await oauth_grants.create_code(session, _request(pk, "late"))
        await oauth_grants.create_code(session, _request(pk, "pending"))
        await session.execute(
            update(OAuthCode).where(OAuthCode.client_id == "late").values(expires_at=now - DAY)
        )
        # One of the live grant's access tokens has expired.
        live = await session.scalar(select(OAuthGrant).where(OAuthGrant.client_id == "live"))
        assert live is not None
        oldest = await session.scalar(
            select(OAuthAccessToken.jti).where(OAuthAccessToken.grant_pk == live.pk).limit(1)
        )
        await session.execute(
            update(OAuthAccessToken)
            .where(OAuthAccessToken.jti == oldest)
            .values(expires_at=now - DAY)
        )
        session.add_all(
            [
                _client("stale-unused", dt.timedelta(days=40)),  # goes
                _client("gone", dt.timedelta(days=40)),  # a (revoked) grant names it: stays
                _client("pending", dt.timedelta(days=40)),  # a pending code names it: stays
                _client("fresh-unused", dt.timedelta(days=2)),  # not stale yet: stays
            ]
        )
        await session.commit()
        before = {
            t: await _count(session, t) for t in (OAuthCode, OAuthAccessToken, OAuthRefreshToken)
        }

    told: list[tuple[str, int]] = []
    async with migrated_sessions() as session:
        pruned = await oauth_cleanup.prune(session, 30, progress=lambda k, n: told.append((k, n)))
    # The late code; one expired access token plus the revoked grant's one; the revoked
    # grant's refresh token (retired by the revocation); one client.
    assert pruned == oauth_cleanup.Pruned(codes=1, access_tokens=2, refresh_tokens=1, clients=1)
    assert told == [("codes", 1), ("access_tokens", 2), ("refresh_tokens", 1), ("clients", 1)]

    async with migrated_sessions() as session:
        assert await _count(session, OAuthCode) == before[OAuthCode] - 1
        assert await _count(session, OAuthAccessToken) == before[OAuthAccessToken] - 2
        assert await _count(session, OAuthRefreshToken) == before[OAuthRefreshToken] - 1
        left = set((await session.scalars(select(OAuthClient.client_id))).all())
        assert left == {"gone", "pending", "fresh-unused"}
        assert await _count(session, OAuthGrant) == 2  # grants are never deleted
        # The live grant still refreshes; its retired token still gives a thief away.
        assert await oauth_grants.find_refresh(session, second) is not None
        assert await oauth_grants.find_refresh(session, first) is None
        await session.commit()
        revoked = await session.scalar(select(OAuthGrant).where(OAuthGrant.client_id == "live"))
        assert revoked is not None
        assert revoked.revoked_at is not None

    async with migrated_sessions() as session:  # the reuse just revoked it: its tokens go now
        again = await oauth_cleanup.prune(session, 30)
    assert again == oauth_cleanup.Pruned(codes=0, access_tokens=1, refresh_tokens=2, clients=0)


async def test_expired_refresh_tokens_of_a_live_grant_go(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with migrated_sessions() as session:
        account = await accounts.create_account(session, "old@example.com", Tier.FREE)
        await _granted(session, account.pk, "host")
        await session.commit()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=AUTH.oauth_refresh_ttl_s + 60)
    async with migrated_sessions() as session:
        pruned = await oauth_cleanup.prune(session, 30, now=later)
    # The grant's code (used, expired since), its access and its refresh token.
    assert (pruned.codes, pruned.access_tokens, pruned.refresh_tokens) == (1, 1, 1)
    assert pruned.summary() == "1 codes, 1 access tokens, 1 refresh tokens, 0 clients"
    async with migrated_sessions() as session:
        grant = await session.scalar(select(OAuthGrant))
        assert grant is not None
        assert grant.revoked_at is None  # the grant itself stays

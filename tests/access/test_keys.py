import datetime as dt
import hashlib

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import accounts, keys
from kamiyo.db.tables import ApiKey, Subscription
from kamiyo.tiers import TIERS, Tier

pytestmark = pytest.mark.anyio


@pytest.fixture
def session(migrated_session: AsyncSession) -> AsyncSession:
    return migrated_session


async def test_a_key_is_shown_once_and_stored_only_as_its_hash(session: AsyncSession) -> None:
    account = await accounts.create_account(session, "  Alice@Example.COM ")
    assert account.email == "alice@example.com"
    new = await keys.create_key(session, account, "laptop")
    await session.commit()
    assert new.key.startswith("kmy_live_")
    assert len(new.key) >= 50
    assert new.key.startswith(new.prefix)
    stored = (await session.scalars(select(ApiKey))).one()
    assert stored.key_hash == hashlib.sha256(new.key.encode()).hexdigest()
    assert new.key not in {stored.prefix, stored.key_hash, stored.name}
    found = await keys.account_for_key(session, new.key)
    assert found is not None
    assert found[0].email == "alice@example.com"
    assert found[1] == stored.pk


async def test_wrong_revoked_and_malformed_keys_find_no_account(session: AsyncSession) -> None:
    account = await accounts.create_account(session, "bob@example.com")
    new = await keys.create_key(session, account, "ci")
    await session.commit()
    for wrong in (new.key + "x", new.key[:-1], "kmy_live_", "", "' OR 1=1 --", "x" * 100_000):
        assert await keys.account_for_key(session, wrong) is None
    assert await keys.revoke_key(session, new.prefix) is not None
    await session.commit()
    assert await keys.account_for_key(session, new.key) is None
    assert await keys.revoke_key(session, "kmy_live_nothere") is None


async def test_seats_limit_active_keys_per_tier(session: AsyncSession) -> None:
    free = await accounts.create_account(session, "free@example.com")
    first = await keys.create_key(session, free, "one")
    with pytest.raises(accounts.AccountError, match="1 active key"):
        await keys.create_key(session, free, "two")
    await keys.revoke_key(session, first.prefix)  # a revoked key frees its seat
    await keys.create_key(session, free, "two")

    team = await accounts.create_account(session, "team@example.com", Tier.TEAM)
    seats = TIERS[Tier.TEAM].seats
    assert seats == 5
    for n in range(seats):
        await keys.create_key(session, team, f"k{n}")
    with pytest.raises(accounts.AccountError, match="all its tier allows"):
        await keys.create_key(session, team, "one too many")


async def test_tier_comes_from_the_subscription_state(session: AsyncSession) -> None:
    account = await accounts.create_account(session, "carol@example.com", Tier.PERSONAL)
    assert await accounts.current_tier(session, account) is Tier.PERSONAL
    subscription = await session.get(Subscription, account.pk)
    assert subscription is not None
    subscription.status = "canceled"
    assert await accounts.current_tier(session, account) is Tier.FREE


async def test_seats_follow_the_operators_past_due_grace(session: AsyncSession) -> None:
    team = await accounts.create_account(session, "late@example.com", Tier.TEAM)
    subscription = await session.get(Subscription, team.pk)
    assert subscription is not None
    subscription.status = "past_due"
    subscription.past_due_since = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    await keys.create_key(session, team, "one")
    # Three days late: within the default grace (7 days) a team keeps its seats; under a
    # one-day grace it is on the free tier, whose one seat is taken.
    await keys.create_key(session, team, "two")
    with pytest.raises(accounts.AccountError, match="all its tier allows"):
        await keys.create_key(session, team, "three", dt.timedelta(days=1))


@pytest.mark.parametrize("email", ["", "no-at-sign", "a@b", "a b@example.com", "@example.com"])
async def test_bad_emails_are_refused(session: AsyncSession, email: str) -> None:
    with pytest.raises(accounts.AccountError, match="not an email address"):
        await accounts.create_account(session, email)


async def test_duplicate_accounts_and_odd_key_names(session: AsyncSession) -> None:
    account = await accounts.create_account(session, "dave@example.com")
    with pytest.raises(accounts.AccountError, match="exists already"):
        await accounts.create_account(session, "DAVE@example.com")
    new = await keys.create_key(session, account, "'); DROP TABLE api_keys; --")
    await session.commit()
    assert [k.name for k in await keys.list_keys(session, account)] == [new.name]
    with pytest.raises(accounts.AccountError, match="1 to 100 characters"):
        await keys.create_key(session, account, "   ")

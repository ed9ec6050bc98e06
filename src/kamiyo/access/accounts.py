"""Accounts and the tier they hold now."""

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Account, Subscription
from kamiyo.tiers import Tier

# Subscription states that keep their tier; past_due keeps it for a grace period.
ENTITLED_STATES = frozenset({"active", "trialing"})
DEFAULT_GRACE = dt.timedelta(days=7)
MAX_EMAIL_LENGTH = 320


class AccountError(ValueError):
    """An account request that cannot be met; the message says why."""


def normalize_email(email: str) -> str:
    address = email.strip().lower()
    local, at, domain = address.partition("@")
    if (
        not at
        or not local
        or "." not in domain
        or any(ch.isspace() for ch in address)
        or len(address) > MAX_EMAIL_LENGTH
    ):
        raise AccountError(f"{email!r} is not an email address")
    return address


async def find_account(session: AsyncSession, email: str) -> Account | None:
    return await session.scalar(select(Account).where(Account.email == normalize_email(email)))


async def create_account(session: AsyncSession, email: str, tier: Tier = Tier.FREE) -> Account:
    """A new active account (paid tiers get an active subscription row). Caller commits."""
    address = normalize_email(email)
    if await find_account(session, address) is not None:
        raise AccountError(f"an account for {address} exists already")
    now = dt.datetime.now(dt.UTC)
    account = Account(email=address, status="active", created_at=now)
    session.add(account)
    await session.flush()
    if tier is not Tier.FREE:
        session.add(
            Subscription(account_pk=account.pk, tier=tier.value, status="active", updated_at=now)
        )
    return account


def entitled_tier(
    subscription: Subscription | None, now: dt.datetime, past_due_grace: dt.timedelta
) -> Tier:
    """The tier a subscription in this state gives at ``now``."""
    if subscription is None:
        return Tier.FREE
    if subscription.status in ENTITLED_STATES:
        return Tier(subscription.tier)
    if subscription.status == "past_due":
        since = subscription.past_due_since or subscription.updated_at
        if now < since + past_due_grace:
            return Tier(subscription.tier)
    return Tier.FREE


async def current_tier(
    session: AsyncSession, account: Account, past_due_grace: dt.timedelta = DEFAULT_GRACE
) -> Tier:
    """The tier the account's subscription entitles it to now; free without one."""
    subscription = await session.get(Subscription, account.pk)
    return entitled_tier(subscription, dt.datetime.now(dt.UTC), past_due_grace)

"""Accounts and the tier they hold now."""

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Account, Subscription
from kamiyo.tiers import Tier

# Subscription states that keep their tier (past_due until the grace period ends, later).
ENTITLED_STATES = frozenset({"active", "trialing", "past_due"})
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


async def current_tier(session: AsyncSession, account: Account) -> Tier:
    """The tier the account's subscription entitles it to now; free without one."""
    subscription = await session.get(Subscription, account.pk)
    if subscription is None or subscription.status not in ENTITLED_STATES:
        return Tier.FREE
    return Tier(subscription.tier)

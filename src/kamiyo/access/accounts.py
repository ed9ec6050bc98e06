"""Accounts and the tier they hold now; what operators change on them."""

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import revocation
from kamiyo.db.bounds import unstorable
from kamiyo.db.tables import Account, ApiKey, Role, Subscription
from kamiyo.tiers import Tier

# Subscription states that keep their tier; past_due keeps it for a grace period.
ENTITLED_STATES = frozenset({"active", "trialing"})
DEFAULT_GRACE = dt.timedelta(days=7)
MAX_EMAIL_LENGTH = 320
DISABLED_MESSAGE = "This account is disabled; contact the operator."


class AccountStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class TierSource(StrEnum):
    """Who set the tier a subscription row holds (``subscriptions.tier_source``)."""

    STRIPE = "stripe"  # webhooks or `kamiyo billing sync`
    OPERATOR = "operator"  # by hand: `kamiyo accounts set-tier`, `accounts create --tier`
    DEFAULT = "default"  # no subscription row: the free tier (never stored)


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
        or unstorable(address) is not None
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
            Subscription(
                account_pk=account.pk,
                tier=tier.value,
                status="active",
                updated_at=now,
                tier_source=TierSource.OPERATOR.value,
            )
        )
    return account


async def require_account(session: AsyncSession, email: str) -> Account:
    account = await find_account(session, email)
    if account is None:
        raise AccountError(f"no account for {normalize_email(email)}")
    return account


def is_active(account: Account) -> bool:
    """Whether the account's credentials may be used (anything but active counts as disabled)."""
    return account.status == AccountStatus.ACTIVE


async def set_status(session: AsyncSession, account: Account, status: AccountStatus) -> bool:
    """Enable or disable the account; whether that changed anything. Caller commits (with
    ``revocation.commit``, so running servers refuse or accept its credentials on the next
    call)."""
    if account.status == status:
        return False
    account.status = status.value
    await revocation.bump(session, account.pk)
    return True


async def set_tier(session: AsyncSession, account: Account, tier: Tier) -> Subscription:
    """Set the account's tier by hand: an active subscription row marked as the operator's.

    Stripe ids and the time of the Stripe state are kept, so webhooks still find the account
    and an older event stays stale; the next Stripe change applies over this one (see
    ``billing/subscriptions.py``). Caller commits with ``revocation.commit``.
    """
    # Serialise with a webhook for the same account (PostgreSQL; see subscriptions._locked_row).
    await session.execute(select(Account.pk).where(Account.pk == account.pk).with_for_update())
    row = await session.get(Subscription, account.pk, populate_existing=True, with_for_update=True)
    if row is None:
        row = Subscription(account_pk=account.pk)
        session.add(row)
    row.tier = tier.value
    row.status = "active"
    row.past_due_since = None
    row.tier_source = TierSource.OPERATOR.value
    row.updated_at = dt.datetime.now(dt.UTC)
    await revocation.bump(session, account.pk)
    return row


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


def tier_source(subscription: Subscription | None) -> TierSource:
    return TierSource(subscription.tier_source) if subscription is not None else TierSource.DEFAULT


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """One line of ``kamiyo accounts list``."""

    pk: int
    email: str
    tier: Tier  # what the subscription entitles it to now
    tier_source: TierSource
    status: str
    active_keys: int
    keys: int
    created_at: dt.datetime


async def list_accounts(
    session: AsyncSession,
    past_due_grace: dt.timedelta = DEFAULT_GRACE,
    *,
    tier: Tier | None = None,
    status: AccountStatus | None = None,
) -> list[AccountSummary]:
    """Every account, oldest first, optionally only those on ``tier`` now or in ``status``."""
    counts = (
        select(
            ApiKey.account_pk,
            func.count(ApiKey.pk).label("all_keys"),
            func.count(ApiKey.pk).filter(ApiKey.revoked_at.is_(None)).label("live_keys"),
        )
        .group_by(ApiKey.account_pk)
        .subquery()
    )
    query = (
        select(Account, Subscription, counts.c.all_keys, counts.c.live_keys)
        .outerjoin(Subscription, Subscription.account_pk == Account.pk)
        .outerjoin(counts, counts.c.account_pk == Account.pk)
        .order_by(Account.created_at, Account.pk)
    )
    if status is not None:
        query = query.where(Account.status == status.value)
    now = dt.datetime.now(dt.UTC)
    found = []
    for account, subscription, key_count, active in await session.execute(query):
        holds = entitled_tier(subscription, now, past_due_grace)
        if tier is not None and holds is not tier:
            continue  # the tier held now depends on time (grace), so it is decided here
        found.append(
            AccountSummary(
                pk=account.pk,
                email=account.email,
                tier=holds,
                tier_source=tier_source(subscription),
                status=account.status,
                active_keys=active or 0,
                keys=key_count or 0,
                created_at=account.created_at,
            )
        )
    return found


def account_role(account: Account) -> Role:
    """The account's role (a value this version does not know is no admin)."""
    return Role.ADMIN if account.role == Role.ADMIN.value else Role.USER


def set_role(account: Account, role: Role) -> bool:
    """Make the account an admin or a user again; whether that changed anything. Caller
    commits. The role takes effect on the account's next dashboard page."""
    if account_role(account) is role:
        return False
    account.role = role.value
    return True

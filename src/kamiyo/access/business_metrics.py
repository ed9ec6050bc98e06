"""The operators' figures, from the records: accounts by tier, monthly recurring revenue by
tier, x402 revenue by network, daily active accounts, top tools, error rate, and the funnel
sign-up -> first key -> first call -> paid.

Revenue assumption (the one place it is made): a Stripe price sells its tier at the tier
table's ``price_usd_per_month`` (``tiers.TIERS``; the settings hold only Stripe price ids), so
MRR is each paying subscription's tier price. Paying: a subscription Stripe set
(``tier_source`` stripe, with a Stripe subscription id) that is active, or past due within the
grace period; trials and tiers set by hand bring in nothing. x402 revenue is what the receipts
took (the paid calls' usage records, through their settled payments in the journal: the same
records the usage pages list), in atomic USDC (the same 6 decimals on every network); settled
payments no usage record names yet are counted beside it.
"""

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Date, and_, cast, distinct, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from kamiyo.access.accounts import TierSource, entitled_tier, list_accounts
from kamiyo.access.receipts import (
    NetworkRevenue,
    PaidCall,
    recent_receipts,
    revenue_by_network,
    unrecorded_settlements,
)
from kamiyo.access.usage import ANSWERED
from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import Account, ApiKey, Subscription
from kamiyo.db.usage import UsageDaily, UsageRecord
from kamiyo.tiers import TIERS, Tier

WINDOW_DAYS = 30
TOP_TOOLS = 10
PAYING_STATES = ("active", "past_due")  # past_due only while entitled (the grace period)


@dataclass(frozen=True, slots=True)
class TierRevenue:
    tier: Tier
    subscriptions: int
    mrr_usd: int


@dataclass(frozen=True, slots=True)
class ToolCalls:
    tool: str
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class FunnelStep:
    name: str
    accounts: int
    of_previous: float | None  # the share of the step before that got here (None: first step)
    of_signups: float | None


@dataclass(frozen=True, slots=True)
class BusinessMetrics:
    since: dt.date  # the usage figures' window starts here (UTC)
    accounts_by_tier: dict[Tier, int]
    revenue_by_tier: list[TierRevenue]
    x402_by_network: list[NetworkRevenue]
    recent_receipts: list[PaidCall]  # newest first, every caller's
    emails: dict[int, str]  # every account's, by pk (the receipts name their payer's account)
    unrecorded_settlements: int
    daily_active: list[tuple[dt.date, int]]  # every day of the window, zeros included
    top_tools: list[ToolCalls]
    calls: int  # answered calls in the window
    errors: int
    funnel: list[FunnelStep]

    @property
    def mrr_usd(self) -> int:
        return sum(row.mrr_usd for row in self.revenue_by_tier)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


async def business_metrics(
    session: AsyncSession, grace: dt.timedelta, now: dt.datetime | None = None
) -> BusinessMetrics:
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(dt.UTC).date()
    first_day = today - dt.timedelta(days=WINDOW_DAYS - 1)
    since = dt.datetime.combine(first_day, dt.time(), dt.UTC)
    accounts = await list_accounts(session, grace)
    held = Counter(summary.tier for summary in accounts)
    tools = await _top_tools(session, since)
    return BusinessMetrics(
        since=first_day,
        accounts_by_tier={tier: held.get(tier, 0) for tier in Tier},
        revenue_by_tier=await _revenue_by_tier(session, grace, now),
        x402_by_network=await revenue_by_network(session),
        recent_receipts=await recent_receipts(session),
        emails={summary.pk: summary.email for summary in accounts},
        unrecorded_settlements=await unrecorded_settlements(session),
        daily_active=await _daily_active(session, since, first_day),
        top_tools=tools[:TOP_TOOLS],
        calls=sum(tool.calls for tool in tools),
        errors=sum(tool.errors for tool in tools),
        funnel=await _funnel(session),
    )


async def _revenue_by_tier(
    session: AsyncSession, grace: dt.timedelta, now: dt.datetime
) -> list[TierRevenue]:
    rows = await session.scalars(
        select(Subscription).where(
            Subscription.tier_source == TierSource.STRIPE.value,
            Subscription.stripe_subscription_id.is_not(None),
            Subscription.status.in_(PAYING_STATES),
        )
    )
    paying = Counter(
        tier for tier in (entitled_tier(row, now, grace) for row in rows) if tier is not Tier.FREE
    )
    return [
        TierRevenue(tier, paying.get(tier, 0), paying.get(tier, 0) * policy.price_usd_per_month)
        for tier, policy in TIERS.items()
        if tier is not Tier.FREE
    ]


def _utc_day(session: AsyncSession) -> ColumnElement[dt.date]:
    """A usage record's UTC calendar day (SQLite keeps datetimes as UTC text)."""
    if dialect_name(session) == "sqlite":
        return func.date(UsageRecord.at)
    return cast(func.timezone("UTC", UsageRecord.at), Date)


async def _daily_active(
    session: AsyncSession, since: dt.datetime, first_day: dt.date
) -> list[tuple[dt.date, int]]:
    day = _utc_day(session)
    rows = await session.execute(
        select(day, func.count(distinct(UsageRecord.account_pk)))
        .where(
            UsageRecord.at >= since,
            UsageRecord.account_pk.is_not(None),
            UsageRecord.status.in_(ANSWERED),
        )
        .group_by(day)
    )
    counts = {str(found): active for found, active in rows}  # SQLite answers text
    days = [first_day + dt.timedelta(days=n) for n in range(WINDOW_DAYS)]
    return [(each, counts.get(each.isoformat(), 0)) for each in days]


async def _top_tools(session: AsyncSession, since: dt.datetime) -> list[ToolCalls]:
    """Answered calls per tool in the window, most first (anonymous and paid calls too)."""
    calls = func.count().label("calls")
    rows = await session.execute(
        select(UsageRecord.tool, calls, func.count().filter(UsageRecord.status == "error"))
        .where(UsageRecord.at >= since, UsageRecord.status.in_(ANSWERED))
        .group_by(UsageRecord.tool)
        .order_by(calls.desc(), UsageRecord.tool)
    )
    return [ToolCalls(tool, count, errors) for tool, count, errors in rows]


async def _funnel(session: AsyncSession) -> list[FunnelStep]:
    """Accounts at each step, each step counting only accounts that made the ones before."""
    has_key = exists().where(ApiKey.account_pk == Account.pk)
    called = or_(  # a call in the raw records, or in the daily totals of pruned days
        exists().where(UsageRecord.account_pk == Account.pk, UsageRecord.status.in_(ANSWERED)),
        exists().where(UsageDaily.account_pk == Account.pk, UsageDaily.status.in_(ANSWERED)),
    )
    paid = exists().where(
        Subscription.account_pk == Account.pk,
        Subscription.stripe_subscription_id.is_not(None),
    )
    steps = [
        ("signed up", None),
        ("created a key", has_key),
        ("made a call", and_(has_key, called)),
        ("paid", and_(has_key, called, paid)),
    ]
    found: list[FunnelStep] = []
    for name, condition in steps:
        query = select(func.count(Account.pk))
        count = await session.scalar(query if condition is None else query.where(condition)) or 0
        previous = found[-1].accounts if found else None
        signups = found[0].accounts if found else None
        found.append(FunnelStep(name, count, _share(count, previous), _share(count, signups)))
    return found


def _share(part: int, whole: int | None) -> float | None:
    return part / whole if whole else None

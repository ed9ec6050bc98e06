"""Known rows for the operators' figures: accounts on each tier and path through the funnel,
keys, usage records (answered, failed, refused, anonymous, out of the window) and payments."""

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import accounts, keys
from kamiyo.db.tables import Payment, Subscription
from kamiyo.db.usage import UsageRecord
from kamiyo.tiers import Tier

BASE, SOLANA = "eip155:8453", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"


async def seed(session: AsyncSession, now: dt.datetime) -> None:
    """a: signed up only; b: key and calls (one failed); c: pays for personal through Stripe,
    one call; d: team set by hand, key, no call; e: enterprise through Stripe but past due
    beyond the grace, key, one refused call."""
    made = {
        name: await accounts.create_account(session, f"{name}@metrics.example", tier)
        for name, tier in (
            ("a", Tier.FREE),
            ("b", Tier.FREE),
            ("c", Tier.FREE),
            ("d", Tier.TEAM),
            ("e", Tier.FREE),
        )
    }
    for name in "bcde":
        await keys.create_key(session, made[name], "k")
    for name, tier, status in (("c", "personal", "active"), ("e", "enterprise", "past_due")):
        session.add(
            Subscription(
                account_pk=made[name].pk,
                tier=tier,
                status=status,
                stripe_customer_id=f"cus_{name}",
                stripe_subscription_id=f"sub_{name}",
                past_due_since=now - dt.timedelta(days=30) if status == "past_due" else None,
                updated_at=now,
                tier_source="stripe",
            )
        )
    day = dt.timedelta(days=1)
    calls = [
        (made["b"].pk, "search_exploits", "ok", now),
        (made["b"].pk, "search_exploits", "error", now),
        (made["b"].pk, "search_exploits", "ok", now - day),
        (made["b"].pk, "search_exploits", "ok", now - 40 * day),  # out of the window
        (made["c"].pk, "assess_protocol_risk", "ok", now),
        (made["e"].pk, "check_wallet_interactions", "forbidden", now),  # refused: no call
        (None, "get_exploit", "ok", now),  # anonymous (paid per call)
    ]
    for seq, (account_pk, tool, status, at) in enumerate(calls):
        session.add(
            UsageRecord(
                chain=f"seed:{seq}",
                seq=seq,
                at=at,
                account_pk=account_pk,
                key_pk=None,
                tool=tool,
                tier="free",
                status=status,
                duration_us=1000,
                result_count=None,
                cost_units=1 if status == "ok" else 0,
                prev_hash="0" * 64,
                hash="1" * 64,
            )
        )
    for n, (network, amount, state) in enumerate(
        (
            (BASE, 50_000, "settled"),
            (BASE, 100_000, "settled"),
            (SOLANA, 10_000, "settled"),
            (BASE, 999, "failed"),
            (SOLANA, 777, "held"),
        )
    ):
        session.add(
            Payment(
                payment_key=f"key-{n}",
                payload_hash="2" * 64,
                tool="get_exploit",
                network=network,
                amount=amount,
                state=state,
                created_at=now,
                updated_at=now,
            )
        )
    await session.commit()

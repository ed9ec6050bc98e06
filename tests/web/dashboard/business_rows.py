"""Known rows for the operators' figures: accounts on each tier and path through the funnel,
keys, usage records (answered, failed, refused, anonymous, out of the window) and payments."""

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import accounts, keys
from kamiyo.db.payments import Payment
from kamiyo.db.tables import Subscription
from kamiyo.db.usage import UsageRecord
from kamiyo.tiers import Tier

BASE, SOLANA = "eip155:8453", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"


async def seed(session: AsyncSession, now: dt.datetime) -> None:
    """a: signed up only; b: key and calls (one failed); c: pays for personal through Stripe,
    one call; d: team set by hand, key, no call; e: enterprise through Stripe but past due
    beyond the grace, key, one refused call. Three calls paid per call (two anonymous, one
    b's), and a settled payment no usage record names."""
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
    # Payments first: the paid calls' usage records name their rows.
    payments = []
    for n, (network, amount, state) in enumerate(
        (
            (BASE, 50_000, "settled"),
            (BASE, 100_000, "settled"),
            (SOLANA, 10_000, "settled"),
            (BASE, 999, "failed"),
            (SOLANA, 777, "held"),
            (BASE, 20_000, "settled"),  # no usage record names it (an instance died)
        )
    ):
        payment = Payment(
            payment_key=f"key-{n}",
            payload_hash="2" * 64,
            tool="get_exploit",
            network=network,
            payer=f"0xpayer{n}" if state == "settled" else None,
            amount=amount,
            state=state,
            transaction=f"0xtx{n}" if state == "settled" else None,
            created_at=now,
            updated_at=now,
        )
        session.add(payment)
        payments.append(payment)
    await session.flush()
    day, second = dt.timedelta(days=1), dt.timedelta(seconds=1)
    calls = [
        (made["b"].pk, "search_exploits", "ok", now, None),
        (made["b"].pk, "search_exploits", "error", now, None),
        (made["b"].pk, "search_exploits", "ok", now - day, None),
        (made["b"].pk, "search_exploits", "ok", now - 40 * day, None),  # out of the window
        (made["c"].pk, "assess_protocol_risk", "ok", now, None),
        (made["e"].pk, "check_wallet_interactions", "forbidden", now, None),  # refused: no call
        # Paid per call: anonymous, anonymous, and b's key for a tool its tier lacks.
        (None, "get_exploit", "ok", now - 3 * second, payments[0].pk),
        (None, "get_exploit", "ok", now - 2 * second, payments[2].pk),
        (made["b"].pk, "get_exploit", "ok", now - second, payments[1].pk),
    ]
    for seq, (account_pk, tool, status, at, payment_pk) in enumerate(calls):
        session.add(
            UsageRecord(
                chain=f"seed:{seq}",
                seq=seq,
                at=at,
                account_pk=account_pk,
                key_pk=None,
                tool=tool,
                tier="free" if payment_pk is None else "x402",
                status=status,
                duration_us=1000,
                result_count=None,
                cost_units=1 if status == "ok" else 0,
                payment_pk=payment_pk,
                prev_hash="0" * 64,
                hash="1" * 64,
            )
        )
    await session.commit()

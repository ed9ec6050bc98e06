"""Bundles on both backends: exactly the calls bought, however many redeem at once."""

import datetime as dt

import anyio
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.db.bundles import Bundle
from kamiyo.payments import bundles, journal
from kamiyo.payments.prices import BUNDLE_LIFETIME, Band, Pack, Price, tool_price

pytestmark = pytest.mark.anyio

SECRET = b"a test secret of the server"


async def _bought(
    sessions: async_sessionmaker[AsyncSession], calls: int = 25, key: str = "k1"
) -> tuple[str, bundles.Balance]:
    held = await journal.hold(
        sessions,
        journal.Entry(key, "p-" + key, None, "assess_protocol_risk", "eip155:31337", 1_000_000),
    )
    assert isinstance(held, journal.Held)
    await journal.settled(sessions, held, "0xpayer", "0xtx", {"success": True}, None)
    token = bundles.token_for(SECRET, held.pk)
    bought = await bundles.issue(
        sessions,
        token=token,
        payment_pk=held.pk,
        tool="assess_protocol_risk",
        calls=calls,
        payer="0xpayer",
        network="eip155:31337",
        lifetime=BUNDLE_LIFETIME,
    )
    return token, bought


def test_a_token_is_the_same_for_one_payment_and_differs_between_payments() -> None:
    token = bundles.token_for(SECRET, 1)
    assert token == bundles.token_for(SECRET, 1)
    assert token != bundles.token_for(SECRET, 2)
    assert token != bundles.token_for(b"another server", 1)
    assert bundles.looks_like_token(token)
    assert not bundles.looks_like_token(token + "x")
    assert not bundles.looks_like_token("kk_" + token[3:])


async def test_the_buying_call_is_one_of_the_calls_and_the_rest_redeem_once_each(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    token, bought = await _bought(migrated_sessions, calls=3)
    assert (bought.calls, bought.used, bought.remaining) == (3, 1, 2)
    first = await bundles.redeem(migrated_sessions, token, "assess_protocol_risk")
    second = await bundles.redeem(migrated_sessions, token, "assess_protocol_risk")
    assert isinstance(first, bundles.Balance)
    assert first.remaining == 1
    assert isinstance(second, bundles.Balance)
    assert second.remaining == 0
    assert await bundles.redeem(migrated_sessions, token, "assess_protocol_risk") == (
        bundles.Unusable("exhausted")
    )


async def test_a_failed_call_gives_its_call_back(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    token, _ = await _bought(migrated_sessions, calls=2)
    taken = await bundles.redeem(migrated_sessions, token, "assess_protocol_risk")
    assert isinstance(taken, bundles.Balance)
    assert taken.remaining == 0
    returned = await bundles.give_back(migrated_sessions, taken)
    assert returned.remaining == 1
    again = await bundles.redeem(migrated_sessions, token, "assess_protocol_risk")
    assert isinstance(again, bundles.Balance)
    assert again.remaining == 0


async def test_tokens_that_redeem_nothing_say_why(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    token, bought = await _bought(migrated_sessions)
    other = await bundles.redeem(migrated_sessions, token, "check_wallet_interactions")
    assert other == bundles.Unusable("other_tool", "assess_protocol_risk")
    assert "assess_protocol_risk" in other.explain()
    unknown = bundles.token_for(SECRET, 10**9)
    assert await bundles.redeem(migrated_sessions, unknown, "x") == bundles.Unusable("unknown")
    assert await bundles.redeem(migrated_sessions, "garbage", "x") == bundles.Unusable("unknown")
    async with migrated_sessions() as session:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await session.execute(
            update(Bundle).where(Bundle.pk == bought.bundle_pk).values(expires_at=past)
        )
        await session.commit()
    expired = await bundles.redeem(migrated_sessions, token, "assess_protocol_risk")
    assert expired == bundles.Unusable("expired")
    assert expired.explain() == "This bundle has expired."


async def test_issuing_again_for_the_same_payment_buys_nothing_more(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    token, bought = await _bought(migrated_sessions, calls=5)
    await bundles.redeem(migrated_sessions, token, "assess_protocol_risk")
    async with migrated_sessions() as session:
        payment_pk = await session.scalar(select(Bundle.payment_pk))
    assert payment_pk is not None
    again = await bundles.issue(
        migrated_sessions,
        token=token,
        payment_pk=payment_pk,
        tool="assess_protocol_risk",
        calls=5,
        payer="0xpayer",
        network="eip155:31337",
        lifetime=BUNDLE_LIFETIME,
    )
    assert (again.bundle_pk, again.used) == (bought.bundle_pk, 2)
    async with migrated_sessions() as session:
        stored = (await session.execute(select(Bundle))).scalars().all()
    assert len(stored) == 1
    assert stored[0].token_hash == bundles.hash_token(token)  # never the token itself
    async with migrated_sessions() as session:
        assert await bundles.balance(session, token) == again
        assert await bundles.balance(session, "not a token") is None
    assert await bundles.bought_with(migrated_sessions, payment_pk) == again


async def test_sixty_concurrent_calls_on_a_bundle_of_25_take_exactly_24(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    token, _ = await _bought(migrated_sessions, calls=25)
    outcomes: list[bundles.Balance | bundles.Unusable] = []

    async def call() -> None:
        outcomes.append(await bundles.redeem(migrated_sessions, token, "assess_protocol_risk"))

    async with anyio.create_task_group() as tasks:
        for _ in range(60):
            tasks.start_soon(call)
    taken = [o for o in outcomes if isinstance(o, bundles.Balance)]
    assert len(taken) == 24  # the buying call was the 25th
    assert sorted(o.remaining for o in taken) == list(range(24))
    assert outcomes.count(bundles.Unusable("exhausted")) == 36


def test_packs_are_priced_in_the_price_list() -> None:
    price = Price(10_000, bands=(Band(10, 10_000), Band(50, 20_000)), packs=(Pack(100, 800_000),))
    listed = tool_price("search_exploits", price)
    assert [(p.calls, p.usd, p.usd_per_call, p.max_results) for p in listed.packs] == [
        (100, "$0.80", "$0.008", 10)
    ]
    assert price.pack(100) == Pack(100, 800_000)
    assert price.pack(7) is None
    assert Price(50_000).pack_max_results == 50

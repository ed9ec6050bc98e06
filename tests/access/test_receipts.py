"""Receipts in the usage records: a paid call's record names its journal row, the chain's hash
covers the receipt's facts, records from before receipts keep verifying, and the reads."""

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
from x402.schemas import PaymentRequired

from kamiyo.access import accounts, keys
from kamiyo.access.meter import (
    GENESIS,
    USAGE_TABLE,
    Meter,
    Receipt,
    UsageEvent,
    chain_of,
    record_hash,
    verify_chain,
)
from kamiyo.access.receipts import (
    account_receipts,
    recent_receipts,
    revenue_by_network,
    unrecorded_settlements,
)
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.payments import Payment
from kamiyo.db.usage import UsageChain
from kamiyo.payments import journal
from kamiyo.runtime import Runtime
from kamiyo.tiers import Tier
from tests.payments.evm_chain import EvmChain, evm_chain, sign_exact_payment
from tests.payments.serving import evm_settings, paying_server

pytestmark = pytest.mark.anyio
__all__ = ["evm_chain"]  # anvil with our EIP-3009 token (a fixture of tests/payments)

Sessions = async_sessionmaker[AsyncSession]
BASE = "eip155:8453"
SOLANA = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
AT = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def event(
    account_pk: int | None, receipt: Receipt | None = None, at: dt.datetime | None = None
) -> UsageEvent:
    return UsageEvent(
        at=at or dt.datetime.now(dt.UTC),
        account_pk=account_pk,
        key_pk=None,
        tool="assess_protocol_risk",
        tier="x402" if receipt else "free",
        status="ok",
        duration_us=2000,
        result_count=1,
        cost_units=1,
        receipt=receipt,
    )


async def settle(sessions: Sessions, network: str = BASE, amount: int = 50_000) -> Receipt:
    """A payment held and settled in the real journal; its receipt."""
    name = uuid.uuid4().hex
    entry = journal.Entry(name, name, None, "assess_protocol_risk", network, amount)
    held = await journal.hold(sessions, entry)
    assert isinstance(held, journal.Held)
    payer, transaction = f"0xpayer{name[:8]}", f"0x{name}{name}"
    await journal.settled(sessions, held, payer, transaction, {"success": True}, None)
    return Receipt(held.pk, network, payer, amount, transaction)


async def write(sessions: Sessions, *events: UsageEvent) -> None:
    meter = Meter(flush_interval_s=3600)
    async with meter.running(sessions):
        for each in events:
            meter.record(each)


def test_a_record_without_a_receipt_hashes_as_before_receipts() -> None:
    """The digest of a record written before receipts existed (pinned from that code)."""
    old = event(7, at=AT)
    assert record_hash("account:7", 1, old, GENESIS) == (
        "edcd36402da08ed0d7e3c53cfff4e851e444e76d6845dc4c27561b5dce361a1d"
    )
    paid = event(7, Receipt(1, BASE, "0xabc", 50_000, "0xdef"), at=AT)
    assert record_hash("account:7", 1, paid, GENESIS) != record_hash("account:7", 1, old, GENESIS)


async def test_records_from_before_receipts_verify_after_the_migration_beside_paid_ones(
    empty_database_url: str,
) -> None:
    engine: AsyncEngine = create_engine(empty_database_url)
    try:
        await migrate.upgrade(engine, "0015")
        sessions = session_factory(engine)
        chain, prev = chain_of(7), GENESIS
        async with sessions() as session, session.begin():  # rows as the 0015 meter wrote them
            for seq in (1, 2):
                old = event(7, at=AT + dt.timedelta(seconds=seq))
                digest = record_hash(chain, seq, old, prev)
                row = {
                    name: getattr(old, name)
                    for name in ("at", "account_pk", "key_pk", "tool", "tier", "status")
                } | {
                    "duration_us": old.duration_us,
                    "result_count": old.result_count,
                    "cost_units": old.cost_units,
                }
                # Only the columns named are inserted: 0015 has no payment_pk yet.
                await session.execute(
                    insert(USAGE_TABLE).values(
                        chain=chain, seq=seq, prev_hash=prev, hash=digest, **row
                    )
                )
                prev = digest
            session.add(UsageChain(chain=chain, seq=2, hash=prev))
        await migrate.upgrade(engine)
        receipt = await settle(sessions)
        await write(sessions, event(7, receipt), event(7))
        async with sessions() as session:
            check = await verify_chain(session, chain)
            paid = await account_receipts(session, 7, AT)
        assert (check.ok, check.records) == (True, 4), check.problem
        assert [call.receipt for call in paid] == [receipt]
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda pk: update(Payment).where(Payment.pk == pk).values(amount=1), "was altered"),
        (lambda pk: update(Payment).where(Payment.pk == pk).values(payer="0xme"), "was altered"),
        (
            lambda pk: update(Payment).where(Payment.pk == pk).values(transaction="0x0"),
            "was altered",
        ),
        (lambda pk: update(Payment).where(Payment.pk == pk).values(network=SOLANA), "altered"),
        (lambda pk: delete(Payment).where(Payment.pk == pk), "not in the journal"),
    ],
    ids=["amount", "payer", "transaction", "network", "deleted"],
)
async def test_editing_a_receipt_in_the_journal_breaks_the_chain(
    migrated_sessions: Sessions, tamper: object, problem: str
) -> None:
    receipt = await settle(migrated_sessions)
    await write(migrated_sessions, event(8), event(8, receipt), event(8))
    async with migrated_sessions() as session:
        assert (await verify_chain(session, chain_of(8))).ok
        await session.execute(tamper(receipt.payment_pk))  # type: ignore[operator]
        await session.commit()
        check = await verify_chain(session, chain_of(8))
    assert not check.ok
    assert check.problem is not None
    assert check.problem.startswith("record 2 ")
    assert problem in check.problem


async def test_pointing_a_record_at_another_payment_breaks_the_chain(
    migrated_sessions: Sessions,
) -> None:
    first, second = await settle(migrated_sessions), await settle(migrated_sessions)
    await write(migrated_sessions, event(10, first), event(11, second))
    async with migrated_sessions() as session:
        await session.execute(
            update(USAGE_TABLE)
            .where(USAGE_TABLE.c.chain == chain_of(10))
            .values(payment_pk=second.payment_pk)
        )
        await session.commit()
        check = await verify_chain(session, chain_of(10))
    assert (check.ok, check.problem) == (False, "record 1 was altered")


async def test_receipts_are_read_per_account_newest_first_and_by_network(
    migrated_sessions: Sessions,
) -> None:
    now = dt.datetime.now(dt.UTC)
    older, newer = await settle(migrated_sessions), await settle(migrated_sessions, SOLANA, 10_000)
    anonymous = await settle(migrated_sessions)
    await write(
        migrated_sessions,
        event(12, older, at=now - dt.timedelta(minutes=2)),
        event(12),  # a call the subscription covered: no receipt
        event(12, newer, at=now - dt.timedelta(minutes=1)),
        event(None, anonymous, at=now),
        event(13),
    )
    unwritten = [event(12, await settle(migrated_sessions), at=now), event(13)]
    async with migrated_sessions() as session:
        mine = await account_receipts(session, 12, now - dt.timedelta(days=1), unwritten)
        limited = await account_receipts(session, 12, now - dt.timedelta(days=1), limit=1)
        since_then = await account_receipts(session, 12, now - dt.timedelta(seconds=90))
        recent = await recent_receipts(session, 3)
        revenue = await revenue_by_network(session)
        assert await unrecorded_settlements(session) == 1  # the one still in the meter's queue
    assert [call.receipt for call in mine] == [unwritten[0].receipt, newer, older]
    assert [call.amount_usd for call in mine] == ["$0.05", "$0.01", "$0.05"]
    assert [call.receipt for call in limited] == [newer]
    assert [call.receipt for call in since_then] == [newer]
    assert [(call.receipt, call.account_pk) for call in recent] == [
        (anonymous, None),
        (newer, 12),
        (older, 12),
    ]
    assert [(row.network, row.payments, row.amount) for row in revenue] == [
        (BASE, 2, 100_000),
        (SOLANA, 1, 10_000),
    ]


RISK = {"protocol_name": "Euler"}
RISK_PRICE = 50_000


async def test_a_paid_call_through_the_gate_is_recorded_with_its_receipt_once(
    loaded_runtime: Runtime, evm_chain: EvmChain
) -> None:
    """A free key calls a tool its tier lacks and pays with x402 (the same payment id sent
    twice): one record with the receipt of what the chain took, none for the replayed answer."""
    async with loaded_runtime.sessions() as session:
        account = await accounts.create_account(
            session, f"receipt-{uuid.uuid4().hex[:8]}@example.com", Tier.FREE
        )
        key = (await keys.create_key(session, account, "x402")).key
        await session.commit()
    # Written only when the test says (the pending event is read first).
    settings = evm_settings(loaded_runtime, evm_chain, meter={"flush_s": 3600})
    async with paying_server(loaded_runtime, settings, credential=key) as (client, gate):
        offer = await client.call_tool("assess_protocol_risk", RISK)
        assert offer.structured_content is not None
        required = PaymentRequired.model_validate(offer.structured_content)
        extensions = append_payment_identifier_to_extensions(dict(required.extensions or {}))
        payment = sign_exact_payment(evm_chain, required.accepts[0]).model_copy(
            update={"extensions": extensions}
        )
        meta: Any = {"x402/payment": payment.model_dump(mode="json", by_alias=True)}
        paid = await client.call_tool("assess_protocol_risk", RISK, meta=meta)
        again = await client.call_tool("assess_protocol_risk", RISK, meta=meta)
        assert paid.is_error is not True
        assert again.is_error is not True
        sent = (paid.meta or {})["x402/payment-response"]
        assert (again.meta or {})["x402/payment-response"] == sent
        [waiting] = account_paid(gate.meter.pending(account.pk))
        await gate.meter.flush()
    async with loaded_runtime.sessions() as session:
        [call] = await account_receipts(session, account.pk, AT)
        check = await verify_chain(session, chain_of(account.pk))
    assert call.receipt == waiting
    assert call.tool == "assess_protocol_risk"
    assert call.key_pk is not None
    assert call.receipt.network == evm_chain.network
    assert call.receipt.amount == RISK_PRICE
    assert call.receipt.transaction == sent["transaction"]
    assert str(call.receipt.payer).lower() == evm_chain.payer.address.lower()
    assert check.ok, check.problem


def account_paid(events: list[UsageEvent]) -> list[Receipt]:
    return [each.receipt for each in events if each.receipt is not None]

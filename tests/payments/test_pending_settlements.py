"""A settlement whose send gets no answer in time is never charged without an answer.

anvil with TestUSDC, behind a loopback proxy that holds ``eth_sendRawTransaction`` past the
settle timeout (2 s here) and forwards it when the test says (``HoldingRpc``). The chain of this
module is its own: one test moves its clock past a payment's ``validBefore``.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import jsonschema
import pytest
from eth_account.signers.local import LocalAccount
from mcp import Client
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from x402.schemas import PaymentRequired, PaymentRequirements

from kamiyo.config import X402Settings
from kamiyo.db.payments import Payment
from kamiyo.db.usage import UsageRecord
from kamiyo.payments import bundles
from kamiyo.payments.cashier import Cashier
from kamiyo.payments.outcomes import Answered, Declined, Hold, NotSettled, RawPayment, Settled
from kamiyo.payments.pending import SETTLEMENT_EXTENSION
from kamiyo.payments.prices import Pack, Price
from kamiyo.payments.reconcile import reconcile
from kamiyo.payments.settlements import CONFIRMING, RETRY_AFTER_S, reader_for
from kamiyo.runtime import Runtime
from tests.payments.evm_chain import PAYER_USDC, EvmChain, _mined, rpc, running_chain
from tests.payments.evm_chain import sign_exact_payment as signed_with
from tests.payments.rpc_proxy import HoldingRpc
from tests.payments.serving import evm_settings, paying_server
from tests.payments.test_evm_settlement import (
    AMOUNT,
    TOOL,
    instance,
    journal_db,
    network_of,
    x402_settings,
)

pytestmark = pytest.mark.anyio
__all__ = ["journal_db"]

SETTLE_TIMEOUT_S = 2.0
ANSWER = {"incidents": ["the answer the payment bought"]}
SEARCH = {"query": "euler"}
RESOURCE = f"mcp://tool/{TOOL}"
SEARCH_PRICE = 10_000  # $0.01 for up to 10 results


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvmChain]:
    with running_chain(tmp_path_factory.mktemp("anvil-pending")) as started:
        yield started


@pytest.fixture
def proxy(chain: EvmChain) -> Iterator[tuple[HoldingRpc, str]]:
    holding = HoldingRpc(chain.rpc_url)
    with holding.running() as url:
        yield holding, url


@pytest.fixture
def x402(chain: EvmChain, proxy: tuple[HoldingRpc, str]) -> X402Settings:
    pay_to = chain.new_payer(0).address
    return x402_settings(
        network_of(chain, pay_to, proxy[1]), chain, settle_timeout_s=SETTLE_TIMEOUT_S
    )


@pytest.fixture
async def cashier(x402: X402Settings) -> AsyncIterator[Cashier]:
    async with instance(x402, None) as started:
        yield started


def chain_time(chain: EvmChain) -> int:
    return int(rpc(chain.rpc_url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)


def sign(chain: EvmChain, requirements: PaymentRequirements, payer: LocalAccount) -> RawPayment:
    # Valid for 300 s of the chain's clock, which one test moves ahead of the wall clock.
    payment = signed_with(chain, requirements, payer, valid_before=chain_time(chain) + 300)
    return RawPayment(payment.model_dump(mode="json", by_alias=True, exclude_none=True))


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[Payment]:
    async with sessions() as session:
        return list((await session.execute(select(Payment).order_by(Payment.pk))).scalars())


async def sent_unanswered(
    cashier: Cashier,
    chain: EvmChain,
    proxy: HoldingRpc,
    payer: LocalAccount,
    sessions: async_sessionmaker[AsyncSession],
    pack: Pack | None = None,
) -> tuple[RawPayment, Hold]:
    """A payment whose settlement went out and got no answer: kept pending, caller told so."""
    quote = cashier.quote(TOOL, Price(AMOUNT, packs=(pack,) if pack else ()), None, RESOURCE, pack)
    payment = sign(chain, quote.required.accepts[0], payer)
    hold = await cashier.accept(payment, quote, sessions)
    assert isinstance(hold, Hold), hold
    proxy.hold_sends = True
    settled = await cashier.settle(hold, ANSWER, sessions)
    assert settled == NotSettled(CONFIRMING)
    assert proxy.held.is_set()
    return payment, hold


def confirming_as_said(declined: Declined | Any) -> int:
    """The retry delay a settlement_confirming refusal gives, after checking what it says."""
    assert isinstance(declined, Declined), declined
    assert declined.reason == CONFIRMING
    assert "send the same payment again" in declined.message
    assert "not a new one" in declined.message
    required = declined.required
    assert required.error == CONFIRMING
    assert required.accepts == []  # nothing for an x402 client to pay again with
    said = (required.extensions or {})[SETTLEMENT_EXTENSION]
    assert said["state"] == "confirming"
    assert said["retryWith"] == "the same payment"
    assert f"in {said['retryAfterSeconds']} s" in declined.message
    seconds: int = said["retryAfterSeconds"]
    assert 1 <= seconds <= RETRY_AFTER_S
    return seconds


async def land(chain: EvmChain, proxy: HoldingRpc) -> dict[str, Any]:
    """Let the held send reach the chain; its receipt."""
    proxy.release()
    assert await anyio.to_thread.run_sync(proxy.forwarded.wait, 30)
    proxy.hold_sends = False
    return _mined(chain.rpc_url, proxy.sent_hashes[-1])


async def test_a_settlement_that_lands_late_is_answered_once_on_retry(
    cashier: Cashier,
    chain: EvmChain,
    proxy: tuple[HoldingRpc, str],
    x402: X402Settings,
    journal_db: async_sessionmaker[AsyncSession],
) -> None:
    holding, _ = proxy
    payer = chain.new_payer()
    pay_to = x402.networks[0].pay_to
    payment, hold = await sent_unanswered(cashier, chain, holding, payer, journal_db)
    confirming_as_said(cashier.not_settled(hold, CONFIRMING))
    [row] = await rows(journal_db)
    assert row.state == "pending"
    identity = row.chain_identity or {}
    assert (identity["kind"], identity["payer"].lower()) == ("eip3009", payer.address.lower())
    assert identity["transaction"].startswith("0x")

    receipt = await land(chain, holding)
    assert int(receipt["status"], 16) == 1
    quote = hold.quote
    answered = await cashier.accept(payment, quote, journal_db)
    assert isinstance(answered, Answered), answered
    assert answered.answer == ANSWER
    assert answered.first_time  # for the meter: this answer was not given before
    assert answered.receipt is not None
    assert answered.receipt.success
    assert answered.receipt.transaction == receipt["transactionHash"]
    # Answered once: the next retry is an ordinary replay, refused.
    again = await cashier.accept(payment, quote, journal_db)
    assert isinstance(again, Declined)
    assert again.reason == "payment_already_used"
    [row] = await rows(journal_db)
    assert (row.state, row.transaction) == ("settled", receipt["transactionHash"])
    assert (chain.balance_of(payer.address), chain.balance_of(pay_to)) == (
        PAYER_USDC - AMOUNT,
        AMOUNT,
    )


async def test_a_pack_bought_with_a_late_settlement_gets_its_bundle_on_retry(
    cashier: Cashier,
    chain: EvmChain,
    proxy: tuple[HoldingRpc, str],
    journal_db: async_sessionmaker[AsyncSession],
) -> None:
    holding, _ = proxy
    pack = Pack(calls=5, amount=AMOUNT * 4)
    payment, hold = await sent_unanswered(
        cashier, chain, holding, chain.new_payer(), journal_db, pack
    )
    assert await bundles.bought_with(journal_db, hold.held.pk) is None  # nothing bought yet
    await land(chain, holding)
    answered = await cashier.accept(payment, hold.quote, journal_db)
    assert isinstance(answered, Answered), answered
    assert answered.payment_pk == hold.held.pk
    bought = await bundles.bought_with(journal_db, hold.held.pk)
    assert bought is not None
    assert (bought.calls, bought.used, bought.tool) == (5, 1, TOOL)
    token = cashier.bundle_token(hold.held.pk)
    redeemed = await bundles.redeem(journal_db, token, TOOL)
    assert isinstance(redeemed, bundles.Balance)
    assert redeemed.remaining == 3


async def test_a_settlement_that_never_lands_fails_and_a_new_payment_goes_through(
    cashier: Cashier,
    chain: EvmChain,
    proxy: tuple[HoldingRpc, str],
    x402: X402Settings,
    journal_db: async_sessionmaker[AsyncSession],
) -> None:
    holding, _ = proxy
    payer = chain.new_payer()
    pay_to = x402.networks[0].pay_to
    payment, hold = await sent_unanswered(cashier, chain, holding, payer, journal_db)
    # The chain's clock passes validBefore before the held send arrives: it reverts, unused.
    rpc(chain.rpc_url, "evm_increaseTime", 400)
    rpc(chain.rpc_url, "evm_mine")
    assert int((await land(chain, holding))["status"], 16) == 0

    # Resolved as never landed, so the payment is taken up as new: the chain refuses it now.
    retried = await cashier.accept(payment, hold.quote, journal_db)
    assert isinstance(retried, Declined), retried
    assert retried.reason == "invalid_exact_evm_payload_authorization_valid_before"
    [row] = await rows(journal_db)
    assert row.state == "failed"
    assert chain.balance_of(payer.address) == PAYER_USDC

    quote = cashier.quote(TOOL, Price(AMOUNT), None, f"mcp://tool/{TOOL}")
    fresh = await cashier.accept(sign(chain, quote.required.accepts[0], payer), quote, journal_db)
    assert isinstance(fresh, Hold), fresh
    assert isinstance(await cashier.settle(fresh, ANSWER, journal_db), Settled)
    assert (chain.balance_of(payer.address), chain.balance_of(pay_to)) == (
        PAYER_USDC - AMOUNT,
        AMOUNT,
    )


async def test_a_settlement_still_unknown_is_confirming_until_reconciled(
    cashier: Cashier,
    chain: EvmChain,
    proxy: tuple[HoldingRpc, str],
    x402: X402Settings,
    journal_db: async_sessionmaker[AsyncSession],
) -> None:
    holding, _ = proxy
    payer = chain.new_payer()
    payment, hold = await sent_unanswered(cashier, chain, holding, payer, journal_db)
    # Not on chain yet, and the authorization is still valid: nobody can tell yet.
    confirming_as_said(await cashier.accept(payment, hold.quote, journal_db))
    reader = reader_for(x402.networks)
    try:
        before = await reconcile(journal_db, reader)
        assert [s.pk for s in before.pending] == [hold.held.pk]
        assert before.landed_unanswered == []

        await land(chain, holding)
        found = await reconcile(journal_db, reader)
    finally:
        await reader.aclose()
    [charged] = found.landed_unanswered
    assert (charged.pk, charged.amount, charged.tool) == (hold.held.pk, AMOUNT, TOOL)
    assert charged.payer is not None
    assert charged.payer.lower() == payer.address.lower()
    gauge = REGISTRY.get_sample_value("kamiyo_x402_unresolved_settlements", {"state": "landed"})
    assert gauge == 1
    [row] = await rows(journal_db)
    assert row.state == "landed"
    # The retry that comes afterwards is answered as paid, from the journal.
    answered = await cashier.accept(payment, hold.quote, journal_db)
    assert isinstance(answered, Answered)
    assert answered.answer == ANSWER
    assert chain.balance_of(payer.address) == PAYER_USDC - AMOUNT


async def _output_schema(client: Client, tool: str) -> dict[str, Any]:
    listed = await client.list_tools()
    found = next(t for t in listed.tools if t.name == tool)
    assert found.output_schema is not None
    return found.output_schema


async def test_over_mcp_the_caller_is_told_to_retry_the_same_payment_then_answered_once(
    loaded_runtime: Runtime, chain: EvmChain, proxy: tuple[HoldingRpc, str], x402: X402Settings
) -> None:
    holding, _ = proxy
    changes = {"networks": x402.networks, "settle_timeout_s": SETTLE_TIMEOUT_S}
    settings = evm_settings(loaded_runtime, chain, x402=changes)
    payer = chain.new_payer()
    pay_to = x402.networks[0].pay_to
    async with paying_server(loaded_runtime, settings) as (client, gate):
        schema = await _output_schema(client, "search_exploits")
        asked = await client.call_tool("search_exploits", SEARCH)
        required = PaymentRequired.model_validate(asked.structured_content)
        meta: Any = {"x402/payment": sign(chain, required.accepts[0], payer).sent}
        holding.hold_sends = True
        first = await client.call_tool("search_exploits", SEARCH, meta=meta)
        assert first.is_error is True
        told = first.structured_content
        assert told is not None
        jsonschema.validate(told, schema)
        assert told["error"] == CONFIRMING
        assert told["accepts"] == []
        assert told["extensions"][SETTLEMENT_EXTENSION]["retryWith"] == "the same payment"
        wait = told["extensions"][SETTLEMENT_EXTENSION]["retryAfterSeconds"]
        assert f"send the same payment again in {wait} s" in told["message"]

        receipt = await land(chain, holding)
        paid = await client.call_tool("search_exploits", SEARCH, meta=meta)
        assert paid.is_error is not True, paid.content
        assert paid.structured_content is not None
        assert paid.structured_content["incidents"][0]["protocol"] == "Euler Finance"
        jsonschema.validate(paid.structured_content, schema)
        settled = (paid.meta or {})["x402/payment-response"]
        assert settled["transaction"] == receipt["transactionHash"]

        replay = await client.call_tool("search_exploits", SEARCH, meta=meta)
        assert replay.is_error is True
        assert replay.structured_content is not None
        assert replay.structured_content["error"] == "payment_already_used"
        jsonschema.validate(replay.structured_content, schema)
        # Metered once, as the paid call it was: the answer given after the settlement landed.
        await gate.meter.flush()
        async with loaded_runtime.sessions() as session:
            [payment_pk] = (
                await session.scalars(
                    select(Payment.pk).where(Payment.transaction == receipt["transactionHash"])
                )
            ).all()
            metered = (
                await session.execute(
                    select(UsageRecord.tier, UsageRecord.status, UsageRecord.cost_units).where(
                        UsageRecord.payment_pk == payment_pk
                    )
                )
            ).all()
        assert [tuple(row) for row in metered] == [("x402", "ok", 1)]
    assert (chain.balance_of(payer.address), chain.balance_of(pay_to)) == (
        PAYER_USDC - SEARCH_PRICE,
        SEARCH_PRICE,
    )

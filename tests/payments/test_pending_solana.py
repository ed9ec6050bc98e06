"""On Solana, a settlement whose sendTransaction gets no answer in time is resolved by the
chain: its signature's status, and whether its blockhash expired (the RPC over LiteSVM behind
``HoldingRpc``, which holds the send past the settle timeout and then forwards or drops it)."""

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from pydantic import SecretStr
from solders.keypair import Keypair
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.chains import AcceptedNetwork
from kamiyo.config import X402Settings
from kamiyo.db.payments import Payment
from kamiyo.payments.cashier import Cashier
from kamiyo.payments.facilitators import LocalFacilitator
from kamiyo.payments.outcomes import Answered, Declined, Hold, NotSettled, RawPayment, Settled
from kamiyo.payments.prices import Price
from kamiyo.payments.settlements import CONFIRMING
from tests.payments.rpc_proxy import HoldingRpc
from tests.payments.solana_chain import (
    SOLANA_PY_WARNING_FILTERS,
    SolanaChain,
    sign_exact_svm_payment,
)
from tests.payments.test_evm_settlement import journal_db

pytestmark = [pytest.mark.anyio, *SOLANA_PY_WARNING_FILTERS]
__all__ = ["journal_db"]

PRICE = 10_000
TOOL = "search_exploits"
ANSWER = {"incidents": ["the answer the payment bought"]}


@pytest.fixture
def proxy(solana_chain: SolanaChain) -> Iterator[tuple[HoldingRpc, str]]:
    holding = HoldingRpc(solana_chain.rpc_url, send_method="sendTransaction")
    with holding.running() as url:
        yield holding, url


@pytest.fixture
async def cashier(
    solana_chain: SolanaChain, proxy: tuple[HoldingRpc, str]
) -> AsyncIterator[Cashier]:
    network = AcceptedNetwork(
        network=solana_chain.network, pay_to=str(solana_chain.pay_to), rpc_urls=[proxy[1]]
    )
    x402 = X402Settings(
        networks=[network],
        svm_fee_payer_key=SecretStr(str(solana_chain.fee_payer)),
        settle_timeout_s=2.0,
    )
    started = Cashier(x402, LocalFacilitator(x402), secret_key=SecretStr("k" * 32))
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def sent_unanswered(
    cashier: Cashier,
    chain: SolanaChain,
    holding: HoldingRpc,
    payer: Keypair,
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[RawPayment, Hold]:
    quote = cashier.quote(TOOL, Price(PRICE), None, f"mcp://tool/{TOOL}")
    signed = sign_exact_svm_payment(chain, quote.required.accepts[0], payer)
    payment = RawPayment(signed.model_dump(mode="json", by_alias=True, exclude_none=True))
    hold = await cashier.accept(payment, quote, sessions)
    assert isinstance(hold, Hold), hold
    holding.hold_sends = True
    assert await cashier.settle(hold, ANSWER, sessions) == NotSettled(CONFIRMING)
    async with sessions() as session:
        row = (await session.execute(select(Payment))).scalar_one()
    assert row.state == "pending"
    assert (row.chain_identity or {})["kind"] == "svm"
    return payment, hold


async def let_go(holding: HoldingRpc) -> None:
    holding.release()
    assert await anyio.to_thread.run_sync(holding.forwarded.wait, 30)
    holding.hold_sends = False


async def test_a_late_solana_settlement_is_answered_once_on_retry(
    cashier: Cashier,
    solana_chain: SolanaChain,
    proxy: tuple[HoldingRpc, str],
    journal_db: async_sessionmaker[AsyncSession],
) -> None:
    holding, _ = proxy
    chain = solana_chain
    payer = chain.new_wallet(usdc=PRICE * 10)
    paid_before = chain.token_balance(chain.pay_to)
    payment, hold = await sent_unanswered(cashier, chain, holding, payer, journal_db)
    await let_go(holding)
    [signature] = holding.sent_hashes

    answered = await cashier.accept(payment, hold.quote, journal_db)
    assert isinstance(answered, Answered), answered
    assert answered.answer == ANSWER
    assert answered.receipt is not None
    assert answered.receipt.transaction == signature
    again = await cashier.accept(payment, hold.quote, journal_db)
    assert isinstance(again, Declined)
    assert again.reason == "payment_already_used"
    assert chain.token_balance(payer.pubkey()) == PRICE * 9
    assert chain.token_balance(chain.pay_to) - paid_before == PRICE


async def test_a_dropped_solana_settlement_fails_once_its_blockhash_expires(
    cashier: Cashier,
    solana_chain: SolanaChain,
    proxy: tuple[HoldingRpc, str],
    journal_db: async_sessionmaker[AsyncSession],
) -> None:
    holding, _ = proxy
    chain = solana_chain
    payer = chain.new_wallet(usdc=PRICE * 10)
    holding.drop_held = True
    payment, hold = await sent_unanswered(cashier, chain, holding, payer, journal_db)
    await let_go(holding)
    # Unknown to the chain, its blockhash still valid: it may land yet.
    confirming = await cashier.accept(payment, hold.quote, journal_db)
    assert isinstance(confirming, Declined)
    assert confirming.reason == CONFIRMING

    chain.expire_blockhash()
    retried = await cashier.accept(payment, hold.quote, journal_db)
    assert isinstance(retried, Declined), retried
    assert retried.reason not in (CONFIRMING, "payment_already_used", "payment_in_use")
    async with journal_db() as session:
        row = (await session.execute(select(Payment))).scalar_one()
    assert row.state == "failed"
    assert chain.token_balance(payer.pubkey()) == PRICE * 10

    quote = cashier.quote(TOOL, Price(PRICE), None, f"mcp://tool/{TOOL}")
    signed = sign_exact_svm_payment(chain, quote.required.accepts[0], payer)
    fresh = RawPayment(signed.model_dump(mode="json", by_alias=True, exclude_none=True))
    held = await cashier.accept(fresh, quote, journal_db)
    assert isinstance(held, Hold), held
    assert isinstance(await cashier.settle(held, ANSWER, journal_db), Settled)
    assert chain.token_balance(payer.pubkey()) == PRICE * 9

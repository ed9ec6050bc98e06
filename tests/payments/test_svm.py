"""The Solana fee-payer signer on our endpoint pool, against the local chain: failover, status
reads shared by concurrent confirmations, and the verified-payment cache (which never lets a
payment spent in the meantime settle)."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
import pytest
from pydantic import SecretStr
from solders.keypair import Keypair
from x402.schemas import PaymentPayload, PaymentRequirements

from kamiyo.chains import AcceptedNetwork
from kamiyo.config import X402Settings
from kamiyo.payments.facilitators import LocalFacilitator
from kamiyo.payments.rpc import SolanaRpc
from kamiyo.payments.svm import PooledKeypairSigner
from tests.payments.solana_chain import (
    SOLANA_PY_WARNING_FILTERS,
    SolanaChain,
    exact_svm_requirements,
    sign_exact_svm_payment,
)

pytestmark = [pytest.mark.anyio, *SOLANA_PY_WARNING_FILTERS]

PRICE = 10_000


@asynccontextmanager
async def local_facilitator(chain: SolanaChain, *urls: str) -> AsyncIterator[LocalFacilitator]:
    network = AcceptedNetwork(network=chain.network, pay_to=str(chain.pay_to), rpc_urls=list(urls))
    x402 = X402Settings(networks=[network], svm_fee_payer_key=SecretStr(str(chain.fee_payer)))
    facilitator = LocalFacilitator(x402)
    await facilitator.start()
    try:
        yield facilitator
    finally:
        await facilitator.stop()


def payment(chain: SolanaChain, payer: Keypair) -> tuple[PaymentPayload, PaymentRequirements]:
    requirements = exact_svm_requirements(chain, PRICE)
    return sign_exact_svm_payment(chain, requirements, payer), requirements


class Calls:
    """The JSON-RPC methods both endpoints received from now on."""

    def __init__(self, chain: SolanaChain) -> None:
        self._chain = chain
        self._start = [len(server.calls) for server in chain.servers]

    def methods(self) -> list[str]:
        """In order per endpoint, the primary's first."""
        return [
            method
            for server, start in zip(self._chain.servers, self._start, strict=True)
            for method in server.calls[start:]
        ]

    def count(self, method: str) -> int:
        return self.methods().count(method)


async def test_a_payment_settles_through_the_second_endpoint_when_the_first_is_down(
    solana_chain: SolanaChain, caplog: pytest.LogCaptureFixture
) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=PRICE)
    payload, requirements = payment(chain, payer)
    merchant = chain.token_balance(chain.pay_to)
    secret_primary = f"{chain.rpc_url}/?api-key=SECRET-KEY"
    backup_calls = len(chain.backup.calls)
    caplog.set_level(logging.INFO)
    async with local_facilitator(chain, secret_primary, chain.backup_rpc_url) as facilitator:
        with chain.rpc_down(chain.rpc_url):
            verdict = await facilitator.verify(payload, requirements)
            assert verdict.is_valid, verdict
            settled = await facilitator.settle(payload, requirements)
    assert settled.success, settled
    assert chain.token_balance(chain.pay_to) - merchant == PRICE
    assert chain.token_balance(payer.pubkey()) == 0
    served = chain.backup.calls[backup_calls:]
    assert {"simulateTransaction", "sendTransaction", "getSignatureStatuses"} <= set(served)
    host = chain.rpc_url.removeprefix("http://")
    assert f"Solana RPC endpoint {host} is down" in caplog.text
    assert "SECRET" not in caplog.text


async def test_concurrent_confirmations_share_status_reads(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payments = [payment(chain, chain.new_wallet(usdc=PRICE)) for _ in range(6)]
    merchant = chain.token_balance(chain.pay_to)
    async with local_facilitator(chain, chain.rpc_url, chain.backup_rpc_url) as facilitator:
        for payload, requirements in payments:
            assert (await facilitator.verify(payload, requirements)).is_valid
        calls = Calls(chain)
        results = []

        async def settle(payload: PaymentPayload, requirements: PaymentRequirements) -> None:
            results.append(await facilitator.settle(payload, requirements))

        async with anyio.create_task_group() as group:
            for payload, requirements in payments:
                group.start_soon(settle, payload, requirements)
    assert all(result.success for result in results), results
    assert chain.token_balance(chain.pay_to) - merchant == PRICE * len(payments)
    # One status read per confirmation at least, were they not batched.
    assert 1 <= calls.count("getSignatureStatuses") < len(payments)
    assert calls.count("sendTransaction") == len(payments)
    assert calls.count("simulateTransaction") == 0  # verified just before: remembered


async def test_confirmations_from_many_threads_meet_in_one_read(
    solana_chain: SolanaChain,
) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=10 * PRICE)
    signatures = [
        chain.transfer_with_memo(payer, chain.pay_to, PRICE, f"landed {i}") for i in range(10)
    ]
    signer = PooledKeypairSigner(chain.fee_payer)
    # A wider window than the default, so a thread late onto the grid on a busy machine still
    # joins the batch: the test is about the meeting, not the window's width.
    signer.connect(SolanaRpc([chain.rpc_url], batch_window_s=0.1))
    calls = Calls(chain)

    async def confirm(signature: str) -> None:
        await anyio.to_thread.run_sync(signer.confirm_transaction, signature, chain.network)

    try:
        async with anyio.create_task_group() as group:
            for signature in signatures:
                group.start_soon(confirm, signature)
    finally:
        await signer.disconnect()
    assert calls.methods() == ["getSignatureStatuses"]


async def test_a_retried_payment_is_not_simulated_again(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payload, requirements = payment(chain, chain.new_wallet(usdc=PRICE))
    async with local_facilitator(chain, chain.rpc_url, chain.backup_rpc_url) as facilitator:
        calls = Calls(chain)
        assert (await facilitator.verify(payload, requirements)).is_valid
        assert calls.methods() == ["simulateTransaction"]
        # The call failed after verification; the client sends the same payment again.
        assert (await facilitator.verify(payload, requirements)).is_valid
        assert calls.methods() == ["simulateTransaction"]
        assert (await facilitator.settle(payload, requirements)).success
        assert sorted(calls.methods()) == [
            "getSignatureStatuses",
            "sendTransaction",
            "simulateTransaction",
        ]
        # Sent: forgotten, so the chain answers again (the transfer already happened).
        again = await facilitator.verify(payload, requirements)
    assert not again.is_valid
    assert calls.count("simulateTransaction") == 2


async def test_a_payment_spent_after_verification_does_not_settle(
    solana_chain: SolanaChain,
) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=PRICE)
    payload, requirements = payment(chain, payer)
    merchant = chain.token_balance(chain.pay_to)
    async with local_facilitator(chain, chain.rpc_url) as facilitator:
        assert (await facilitator.verify(payload, requirements)).is_valid
        elsewhere = chain.new_wallet().pubkey()
        chain.mint_to(elsewhere, 0)
        chain.transfer_with_memo(payer, elsewhere, PRICE, "spent elsewhere")
        fees = chain.sol_balance(chain.fee_payer.pubkey())
        # The remembered verdict lets the retry through verification; the send re-checks.
        assert (await facilitator.verify(payload, requirements)).is_valid
        settled = await facilitator.settle(payload, requirements)
    assert not settled.success
    assert settled.error_reason == "transaction_failed"
    assert chain.token_balance(chain.pay_to) == merchant
    assert chain.sol_balance(chain.fee_payer.pubkey()) == fees  # nothing landed


async def test_the_signer_refuses_work_before_the_facilitator_starts(
    solana_chain: SolanaChain,
) -> None:
    signer = PooledKeypairSigner(solana_chain.fee_payer)
    with pytest.raises(RuntimeError, match="before the facilitator started"):
        await anyio.to_thread.run_sync(signer.simulate_transaction, "AA==", solana_chain.network)


async def test_an_rpc_outage_is_no_verdict_on_the_payment(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payload, requirements = payment(chain, chain.new_wallet(usdc=PRICE))
    async with local_facilitator(chain, chain.rpc_url, chain.backup_rpc_url) as facilitator:
        with chain.rpc_down():
            down = await facilitator.verify(payload, requirements)
        assert not down.is_valid
        assert down.invalid_reason == "verification_unavailable"
        assert "retry" in (down.invalid_message or "")
        # Back up: the same payment verifies (the outage was not remembered against it).
        assert (await facilitator.verify(payload, requirements)).is_valid


async def test_a_send_that_already_landed_is_taken_as_sent(solana_chain: SolanaChain) -> None:
    """As after a failover whose first endpoint took the transaction but lost its answer: the
    next endpoint's preflight finds it processed, and the signer reads that it landed."""
    chain = solana_chain
    payload, _ = payment(chain, chain.new_wallet(usdc=PRICE))
    signer = PooledKeypairSigner(chain.fee_payer)
    signer.connect(SolanaRpc([chain.rpc_url]))
    fee_payer = str(chain.fee_payer.pubkey())
    signed = signer.sign_transaction(payload.payload["transaction"], fee_payer, chain.network)
    broke = chain.new_wallet(usdc=1)
    refused_tx, _ = payment(chain, broke)
    refused = signer.sign_transaction(refused_tx.payload["transaction"], fee_payer, chain.network)
    try:
        first = await anyio.to_thread.run_sync(signer.send_transaction, signed, chain.network)
        calls = Calls(chain)
        again = await anyio.to_thread.run_sync(signer.send_transaction, signed, chain.network)
        with pytest.raises(RuntimeError, match="Send failed"):
            await anyio.to_thread.run_sync(signer.send_transaction, refused, chain.network)
    finally:
        await signer.disconnect()
    assert first == again
    assert calls.methods()[:2] == ["sendTransaction", "getSignatureStatuses"]
    assert chain.get_transaction(first)["meta"]["err"] is None

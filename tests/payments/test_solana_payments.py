"""Paying per call over MCP on a local Solana chain: the payer's partially signed transfer,
co-signed by KAMIYO's fee payer, checked and sent through our JSON-RPC server over LiteSVM."""

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult
from solders.instruction import CompiledInstruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.null_signer import NullSigner
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from x402.mechanisms.svm.constants import MEMO_PROGRAM_ADDRESS as MEMO_PROGRAM
from x402.schemas import PaymentPayload, PaymentRequired

from kamiyo.payments.svm import ConfirmingKeypairSigner
from kamiyo.runtime import Runtime
from tests.payments.serving import paying_server, svm_settings
from tests.payments.solana_chain import (
    SOLANA_PY_WARNING_FILTERS,
    SolanaChain,
    sign_exact_svm_payment,
)

pytestmark = [pytest.mark.anyio, *SOLANA_PY_WARNING_FILTERS]

SEARCH = {"query": "euler"}
PRICE = 10_000


@dataclass
class Paid:
    client: Client
    chain: SolanaChain

    async def call(self, arguments: dict[str, Any], payment: Any = None) -> CallToolResult:
        meta: Any = {"x402/payment": payment} if payment is not None else None
        return await self.client.call_tool("search_exploits", arguments, meta=meta)

    async def offer(self) -> PaymentRequired:
        result = await self.call(SEARCH)
        assert result.is_error is True
        return PaymentRequired.model_validate(result.structured_content)


@pytest.fixture
async def paid(loaded_runtime: Runtime, solana_chain: SolanaChain) -> AsyncIterator[Paid]:
    settings = svm_settings(loaded_runtime, solana_chain)
    async with paying_server(loaded_runtime, settings) as (client, _):
        yield Paid(client, solana_chain)


def sent(payment: PaymentPayload) -> dict[str, Any]:
    return payment.model_dump(mode="json", by_alias=True, exclude_none=True)


def balances(chain: SolanaChain, payer: Keypair) -> tuple[int, int]:
    return chain.token_balance(payer.pubkey()), chain.token_balance(chain.pay_to)


async def test_the_offer_names_usdc_our_owner_and_our_fee_payer(paid: Paid) -> None:
    [offer] = (await paid.offer()).accepts
    assert offer.network == "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
    assert offer.asset == "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"  # devnet USDC
    assert offer.pay_to == str(paid.chain.pay_to)
    assert offer.amount == str(PRICE)
    assert offer.extra == {"feePayer": str(paid.chain.fee_payer.pubkey())}


async def test_a_paid_call_settles_on_solana(paid: Paid) -> None:
    payer = paid.chain.new_wallet(usdc=PRICE * 10)
    payment = sign_exact_svm_payment(paid.chain, (await paid.offer()).accepts[0], payer)
    before = balances(paid.chain, payer)
    fees_before = paid.chain.sol_balance(paid.chain.fee_payer.pubkey())
    result = await paid.call(SEARCH, sent(payment))
    assert result.is_error is not True, result.content
    assert result.structured_content is not None
    assert result.structured_content["incidents"]
    after = balances(paid.chain, payer)
    assert (before[0] - after[0], after[1] - before[1]) == (PRICE, PRICE)
    receipt = (result.meta or {})["x402/payment-response"]
    assert receipt["success"] is True
    assert receipt["payer"] == str(payer.pubkey())
    status = paid.chain.get_transaction(receipt["transaction"])
    assert status["meta"]["err"] is None
    # The fee payer paid the fees (it co-signed), the payer paid no SOL.
    assert paid.chain.sol_balance(paid.chain.fee_payer.pubkey()) < fees_before
    replay = await paid.call(SEARCH, sent(payment))
    assert replay.structured_content is not None
    assert replay.structured_content["error"] == "payment_already_used"
    assert balances(paid.chain, payer) == after


def with_memo_accounts(
    payment: PaymentPayload, payer: Keypair, fee_payer: Pubkey
) -> PaymentPayload:
    """The payer's transaction rebuilt with the fee payer named in its memo instruction (the
    memo program accepts any signer there), and signed again by the payer."""
    signed = VersionedTransaction.from_bytes(base64.b64decode(payment.payload["transaction"]))
    message = signed.message
    assert isinstance(message, MessageV0)  # x402's client builds v0 messages
    keys = list(message.account_keys)
    memo = Pubkey.from_string(MEMO_PROGRAM)
    instructions = [
        CompiledInstruction(i.program_id_index, bytes(i.data), bytes([keys.index(fee_payer)]))
        if keys[i.program_id_index] == memo
        else i
        for i in message.instructions
    ]
    rebuilt = MessageV0(
        message.header,
        keys,
        message.recent_blockhash,
        instructions,
        list(message.address_table_lookups),
    )
    forged = VersionedTransaction(rebuilt, [NullSigner(fee_payer), payer])
    transaction = base64.b64encode(bytes(forged)).decode()
    return payment.model_copy(update={"payload": {"transaction": transaction}})


async def test_a_transaction_naming_our_fee_payer_is_refused(paid: Paid) -> None:
    payer = paid.chain.new_wallet(usdc=PRICE * 10)
    payment = sign_exact_svm_payment(paid.chain, (await paid.offer()).accepts[0], payer)
    forged = with_memo_accounts(payment, payer, paid.chain.fee_payer.pubkey())
    before = balances(paid.chain, payer)
    result = await paid.call(SEARCH, sent(forged))
    assert result.structured_content is not None
    assert result.structured_content["error"] == "invalid_exact_svm_fee_payer_in_instruction"
    assert balances(paid.chain, payer) == before


async def test_an_overpayment_is_refused_as_not_exact(paid: Paid) -> None:
    payer = paid.chain.new_wallet(usdc=PRICE * 10)
    offer = (await paid.offer()).accepts[0]
    bigger = offer.model_copy(update={"amount": str(PRICE * 2)})
    payment = sign_exact_svm_payment(paid.chain, bigger, payer).model_copy(
        update={"accepted": offer}
    )
    before = balances(paid.chain, payer)
    result = await paid.call(SEARCH, sent(payment))
    assert result.structured_content is not None
    assert result.structured_content["error"] == "invalid_exact_svm_payload_amount_not_exact"
    assert balances(paid.chain, payer) == before


def test_a_transaction_that_landed_but_failed_is_not_confirmed(solana_chain: SolanaChain) -> None:
    """x402's own confirmation takes a landed-but-failed transaction as settled; ours does not."""
    broke = solana_chain.new_wallet(usdc=5)
    signature = solana_chain.transfer_with_memo(
        broke, solana_chain.pay_to, 10, "more than it has", skip_preflight=True
    )
    assert solana_chain.get_transaction(signature)["meta"]["err"] is not None
    signer = ConfirmingKeypairSigner(solana_chain.fee_payer, rpc_url=solana_chain.rpc_url)
    with pytest.raises(RuntimeError, match="Transaction failed"):
        signer.confirm_transaction(signature, solana_chain.network, timeout_seconds=10)

"""Paying with a plain Solana USDC transfer named by its signature, on the local chain.

The unpaid answer gives a reference and a memo; the agent's wallet sends USDC with that memo;
the call names the transfer's signature and the reference. Every refusal code of the flow is
produced by a real transaction (or a real outage) here.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult
from prometheus_client import REGISTRY
from solders.keypair import Keypair
from solders.signature import Signature

from kamiyo.payments.transfer_desk import TRANSFER_EXTENSION
from kamiyo.runtime import Runtime
from tests.payments.serving import paying_server, svm_settings
from tests.payments.solana_chain import SOLANA_PY_WARNING_FILTERS, SolanaChain

pytestmark = [pytest.mark.anyio, *SOLANA_PY_WARNING_FILTERS]

SEARCH = {"query": "euler"}
PRICE = 10_000


@dataclass
class Desk:
    client: Client
    chain: SolanaChain

    async def call(
        self, signature: str | None = None, reference: str | None = None, **arguments: Any
    ) -> CallToolResult:
        tool = arguments.pop("tool", "search_exploits")
        paid = {"x402_payment_signature": signature, "x402_payment_reference": reference}
        given = {k: v for k, v in paid.items() if v is not None}
        return await self.client.call_tool(tool, (arguments or SEARCH) | given)

    async def offer(self, **arguments: Any) -> dict[str, Any]:
        result = await self.call(**arguments)
        assert result.is_error is True
        assert result.structured_content is not None
        offer: dict[str, Any] = result.structured_content["extensions"][TRANSFER_EXTENSION]
        return offer

    def pay(self, offer: dict[str, Any], payer: Keypair, amount: int | None = None) -> str:
        return self.chain.transfer_with_memo(
            payer, self.chain.pay_to, amount or int(offer["amount"]), offer["memo"]
        )


@pytest.fixture
async def desk(loaded_runtime: Runtime, solana_chain: SolanaChain) -> AsyncIterator[Desk]:
    urls = (solana_chain.rpc_url, solana_chain.backup_rpc_url)
    settings = svm_settings(loaded_runtime, solana_chain, *urls)
    async with paying_server(loaded_runtime, settings) as (client, _):
        yield Desk(client, solana_chain)


def error_of(result: CallToolResult) -> str:
    assert result.is_error is True
    assert result.structured_content is not None, result.content
    return str(result.structured_content["error"])


async def test_the_unpaid_answer_says_how_to_pay_by_transfer(desk: Desk) -> None:
    offer = await desk.offer()
    assert offer["tokenAccount"] == str(desk.chain.pay_to_ata)
    assert offer["asset"] == str(desk.chain.mint)
    assert offer["amount"] == str(PRICE)
    assert offer["memo"].startswith("kamiyo:")
    assert offer["reference"] not in offer["memo"]  # the memo is public, the reference is not
    result = await desk.call()
    sentence = result.content[1].text  # type: ignore[union-attr]
    assert offer["tokenAccount"] in sentence
    assert "x402_payment_signature" in sentence


async def test_a_transfer_pays_for_one_call(desk: Desk) -> None:
    payer = desk.chain.new_wallet(usdc=PRICE * 5)
    offer = await desk.offer()
    signature = desk.pay(offer, payer)
    result = await desk.call(signature, offer["reference"])
    assert result.is_error is not True, result.content
    assert result.structured_content is not None
    assert result.structured_content["incidents"]
    receipt = (result.meta or {})["x402/payment-response"]
    assert receipt == {
        "success": True,
        "transaction": signature,
        "network": desk.chain.network,
        "payer": str(payer.pubkey()),
    }
    assert error_of(await desk.call(signature, offer["reference"])) == "REPLAY_ATTACK"


async def test_someone_else_cannot_claim_a_transfer_they_only_saw_on_chain(desk: Desk) -> None:
    payer = desk.chain.new_wallet(usdc=PRICE * 5)
    offer = await desk.offer()
    signature = desk.pay(offer, payer)
    assert error_of(await desk.call(signature)) == "PAYMENT_REQUIRED"  # no reference
    other = (await desk.offer())["reference"]  # a reference of their own
    assert error_of(await desk.call(signature, other)) == "PAYMENT_REQUIRED"
    # The one who paid still can.
    assert (await desk.call(signature, offer["reference"])).is_error is not True


async def test_two_concurrent_claims_of_one_transfer_make_one_answer(desk: Desk) -> None:
    payer = desk.chain.new_wallet(usdc=PRICE * 5)
    offer = await desk.offer()
    signature = desk.pay(offer, payer)
    results: list[CallToolResult] = []

    async def claim() -> None:
        results.append(await desk.call(signature, offer["reference"]))

    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(claim)
    answered = [r for r in results if r.is_error is not True]
    assert len(answered) == 1
    assert {error_of(r) for r in results if r.is_error} == {"REPLAY_ATTACK"}


async def test_each_bad_transfer_gets_its_code(desk: Desk) -> None:
    payer = desk.chain.new_wallet(usdc=PRICE * 10)
    offer = await desk.offer()
    reference = offer["reference"]
    short = desk.pay(offer, payer, amount=PRICE - 1)
    assert error_of(await desk.call(short, reference)) == "INSUFFICIENT_AMOUNT"
    elsewhere = desk.chain.transfer_with_memo(
        payer, desk.chain.new_wallet(usdc=1).pubkey(), PRICE, offer["memo"]
    )
    assert error_of(await desk.call(elsewhere, reference)) == "WRONG_RECIPIENT"
    assert error_of(await desk.call("not-a-signature", reference)) == "INVALID_SIGNATURE"
    unknown = str(Signature.new_unique())
    assert error_of(await desk.call(unknown, reference)) == "TRANSACTION_NOT_FOUND"
    broke = desk.chain.new_wallet(usdc=5)
    failed = desk.chain.transfer_with_memo(
        broke, desk.chain.pay_to, PRICE, offer["memo"], skip_preflight=True
    )
    assert error_of(await desk.call(failed, reference)) == "INVALID_SIGNATURE"
    # A memo issued for search at 10 results does not pay for 50, even with enough USDC: the
    # memo binds the price it was issued for.
    paid = desk.pay(offer, payer, amount=PRICE * 2)
    assert error_of(await desk.call(paid, reference, limit=50)) == "PAYMENT_REQUIRED"


async def test_an_old_transfer_has_expired(desk: Desk) -> None:
    payer = desk.chain.new_wallet(usdc=PRICE * 5)
    offer = await desk.offer()
    with desk.chain.clock_at(int(time.time()) - 600):
        signature = desk.pay(offer, payer)
    assert error_of(await desk.call(signature, offer["reference"])) == "EXPIRED_PAYMENT"


async def test_rpc_failover_and_outage(desk: Desk) -> None:
    payer = desk.chain.new_wallet(usdc=PRICE * 5)
    offer = await desk.offer()
    signature = desk.pay(offer, payer)
    with desk.chain.rpc_down():
        assert error_of(await desk.call(signature, offer["reference"])) == "RPC_ERROR"
    with desk.chain.rpc_down(desk.chain.rpc_url):  # the backup answers
        result = await desk.call(signature, offer["reference"])
    assert result.is_error is not True, result.content


def cache_hits() -> float:
    return REGISTRY.get_sample_value("kamiyo_x402_verified_cache_total", {"outcome": "hit"}) or 0


async def test_a_failed_tool_call_keeps_the_transfer_for_a_retry(desk: Desk) -> None:
    """Nothing is taken for a failed call; the retry is checked from memory, not the chain."""
    payer = desk.chain.new_wallet(usdc=PRICE * 5)
    offer = await desk.offer(tool="get_exploit", exploit_id="nope")
    signature = desk.pay(offer, payer)
    failed = await desk.call(signature, offer["reference"], tool="get_exploit", exploit_id="nope")
    assert failed.is_error is True
    assert "No incident with id" in failed.content[0].text  # type: ignore[union-attr]
    hits, reads = cache_hits(), len(desk.chain.servers[0].calls) + len(desk.chain.servers[1].calls)
    retry = await desk.call(
        signature, offer["reference"], tool="get_exploit", exploit_id="20230313_eulerfinance"
    )
    assert retry.is_error is not True, retry.content
    assert cache_hits() == hits + 1
    assert len(desk.chain.servers[0].calls) + len(desk.chain.servers[1].calls) == reads


async def test_a_transfer_buys_a_pack_of_calls(desk: Desk) -> None:
    payer = desk.chain.new_wallet(usdc=1_000_000)
    pack = {"query": "euler", "x402_bundle_calls": 100}  # 100 searches for $0.80 (catalogue)
    offer = await desk.offer(**pack)
    assert offer["amount"] == "800000"
    signature = desk.pay(offer, payer)
    bought = await desk.call(signature, offer["reference"], **pack)
    assert bought.is_error is not True, bought.content
    assert bought.structured_content is not None
    bundle = bought.structured_content["bundle"]
    assert (bundle["calls"], bundle["remaining"]) == (100, 99)
    token = {"query": "euler", "x402_bundle_token": bundle["token"]}
    again = await desk.client.call_tool("search_exploits", token)
    assert again.structured_content is not None
    assert again.structured_content["bundle"]["remaining"] == 98
    assert error_of(await desk.call(signature, offer["reference"], **pack)) == "REPLAY_ATTACK"

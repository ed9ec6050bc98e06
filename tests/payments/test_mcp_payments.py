"""Paying per call over MCP on a real local EVM chain: anvil, our EIP-3009 token, x402's client.

The server runs in process (the SDK's in-memory client), with the account gate, a real database
and KAMIYO settling with its own relayer; balances on the chain are the proof of payment.
"""

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult
from sqlalchemy import select
from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from kamiyo.access import accounts, keys
from kamiyo.access.account_gate import AccountGate
from kamiyo.db.payments import Payment
from kamiyo.db.usage import UsageRecord
from kamiyo.payments.cashier import Cashier
from kamiyo.payments.facilitators import LocalFacilitator
from kamiyo.runtime import Runtime
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.service.terms import listing
from kamiyo.tiers import Tier
from tests.payments.evm_chain import EvmChain, sign_exact_payment, tampered
from tests.payments.serving import evm_settings, paying_server

pytestmark = pytest.mark.anyio

SEARCH = {"query": "euler"}
SEARCH_PRICE = 10_000  # $0.01 for up to 10 results


@dataclass
class Paid:
    client: Client
    chain: EvmChain
    runtime: Runtime
    gate: AccountGate

    async def call(
        self, tool: str, arguments: dict[str, Any], payment: Any = None
    ) -> CallToolResult:
        # The SDK types _meta as a TypedDict of its own keys; x402's key is an extra one.
        meta: Any = {"x402/payment": payment} if payment is not None else None
        return await self.client.call_tool(tool, arguments, meta=meta)

    async def offer(self, tool: str = "search_exploits", **arguments: Any) -> PaymentRequired:
        result = await self.call(tool, arguments or SEARCH)
        assert result.is_error is True
        assert result.structured_content is not None
        return PaymentRequired.model_validate(result.structured_content)

    def sign(self, required: PaymentRequired, **overrides: Any) -> PaymentPayload:
        return sign_exact_payment(self.chain, required.accepts[0], **overrides)

    async def payments(self) -> list[Payment]:
        async with self.runtime.sessions() as session:
            return list((await session.execute(select(Payment))).scalars())


def as_sent(payment: PaymentPayload) -> dict[str, Any]:
    return payment.model_dump(mode="json", by_alias=True, exclude_none=True)


@asynccontextmanager
async def paid_server(
    runtime: Runtime, chain: EvmChain, facilitator: Callable[[Any], Any] | None = None
) -> AsyncIterator[Paid]:
    settings = evm_settings(runtime, chain, site={"upgrade_url": "https://kamiyo.example/pricing"})
    cashier = (
        Cashier(
            settings.x402,
            facilitator(settings.x402),
            secret_key=settings.auth.secret_key,
            upgrade_url=settings.site.upgrade_url,
        )
        if facilitator
        else None
    )
    async with paying_server(runtime, settings, cashier) as (client, gate):
        yield Paid(client, chain, runtime, gate)


@pytest.fixture
async def paid(loaded_runtime: Runtime, evm_chain: EvmChain) -> AsyncIterator[Paid]:
    async with paid_server(loaded_runtime, evm_chain) as served:
        yield served


@pytest.fixture
def balances(evm_chain: EvmChain) -> Callable[[], tuple[int, int]]:
    """(payer, pay_to) balances, to compare before and after."""
    return lambda: (
        evm_chain.balance_of(evm_chain.payer.address),
        evm_chain.balance_of(evm_chain.pay_to),
    )


async def test_an_unpaid_call_answers_payment_required_as_the_spec_shows(paid: Paid) -> None:
    result = await paid.call("search_exploits", SEARCH)
    assert result.is_error is True
    required = result.structured_content
    assert required is not None
    # The same JSON in the first text block, then one sentence for clients that cannot pay.
    assert json.loads(result.content[0].text) == required  # type: ignore[union-attr]
    sentence = result.content[1].text  # type: ignore[union-attr]
    assert "search_exploits costs $0.01 in USDC per call" in sentence
    assert "https://kamiyo.example/pricing" in sentence
    assert required["x402Version"] == 2
    assert required["resource"] == {
        "url": "mcp://tool/search_exploits",
        "mimeType": "application/json",
        # For x402 directories: what it does and what it costs, under 500 characters.
        "description": listing(CATALOGUE[ToolName.SEARCH_EXPLOITS]),
    }
    assert required["extensions"]["bazaar"]["info"]["input"]["toolName"] == "search_exploits"
    [offer] = required["accepts"]
    assert offer == {
        "scheme": "exact",
        "network": paid.chain.network,
        "asset": paid.chain.token,
        "amount": str(SEARCH_PRICE),
        "payTo": paid.chain.pay_to,
        "maxTimeoutSeconds": 300,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    assert "payment-identifier" in required["extensions"]
    # Banded by size: 50 results cost more.
    bigger = await paid.offer(query="euler", limit=50)
    assert bigger.accepts[0].amount == "20000"


async def test_a_paid_call_settles_on_chain_and_carries_the_receipt(
    paid: Paid, balances: Callable[[], tuple[int, int]]
) -> None:
    payment = paid.sign(await paid.offer())
    before = balances()
    result = await paid.call("search_exploits", SEARCH, as_sent(payment))
    assert result.is_error is not True, result.content
    assert result.structured_content is not None
    assert result.structured_content["incidents"][0]["protocol"] == "Euler Finance"
    after = balances()
    assert (before[0] - after[0], after[1] - before[1]) == (SEARCH_PRICE, SEARCH_PRICE)
    receipt = (result.meta or {})["x402/payment-response"]
    assert receipt["success"] is True
    assert receipt["network"] == paid.chain.network
    assert receipt["payer"].lower() == paid.chain.payer.address.lower()
    assert receipt["transaction"].startswith("0x")
    [row] = [p for p in await paid.payments() if p.transaction == receipt["transaction"]]
    assert (row.state, row.amount, row.tool) == ("settled", SEARCH_PRICE, "search_exploits")


async def test_paid_calls_are_metered_as_x402(paid: Paid) -> None:
    payment = paid.sign(await paid.offer())
    await paid.call("search_exploits", SEARCH, as_sent(payment))
    await paid.gate.meter.flush()
    async with paid.runtime.sessions() as session:
        rows = list((await session.execute(select(UsageRecord.tier, UsageRecord.status))).all())
    assert ("x402", "ok") in rows
    assert ("free", "payment_required") in rows or ("none", "payment_required") in rows


async def test_a_settled_payment_cannot_pay_twice(
    paid: Paid, balances: Callable[[], tuple[int, int]]
) -> None:
    payment = as_sent(paid.sign(await paid.offer()))
    assert (await paid.call("search_exploits", SEARCH, payment)).is_error is not True
    before = balances()
    replay = await paid.call("search_exploits", SEARCH, payment)
    assert replay.is_error is True
    assert replay.structured_content is not None
    assert replay.structured_content["error"] == "payment_already_used"
    assert "already paid for a call" in replay.content[1].text  # type: ignore[union-attr]
    assert balances() == before


async def test_the_same_payment_id_gets_the_same_answer_without_a_second_charge(
    paid: Paid, balances: Callable[[], tuple[int, int]]
) -> None:
    required = await paid.offer()
    extensions = append_payment_identifier_to_extensions(dict(required.extensions or {}))
    payment = paid.sign(required).model_copy(update={"extensions": extensions})
    first = await paid.call("search_exploits", SEARCH, as_sent(payment))
    before = balances()
    again = await paid.call("search_exploits", SEARCH, as_sent(payment))
    assert again.is_error is not True
    assert again.structured_content == first.structured_content
    assert (again.meta or {})["x402/payment-response"] == (first.meta or {})[
        "x402/payment-response"
    ]
    assert balances() == before
    # The same id with another payment is refused, and costs nothing.
    other = paid.sign(required).model_copy(update={"extensions": extensions})
    conflict = await paid.call("search_exploits", SEARCH, as_sent(other))
    assert conflict.structured_content is not None
    assert conflict.structured_content["error"] == "payment_id_conflict"
    assert balances() == before


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("underpaid", "unsupported_requirements"),
        ("underpaid-signed", "invalid_exact_evm_payload_authorization_value_mismatch"),
        ("wrong-recipient", "unsupported_requirements"),
        ("wrong-recipient-signed", "invalid_exact_evm_payload_recipient_mismatch"),
        ("wrong-asset", "unsupported_requirements"),
        ("wrong-network", "unsupported_requirements"),
        ("expired", "invalid_exact_evm_payload_authorization_valid_before"),
        ("tampered-signature", "invalid_exact_evm_payload_signature"),
        ("garbage", "invalid_payload"),
    ],
)
async def test_attacks_are_refused_and_cost_nothing(
    paid: Paid, balances: Callable[[], tuple[int, int]], attack: str, reason: str
) -> None:
    required = await paid.offer()
    offer = required.accepts[0]
    stranger = "0x000000000000000000000000000000000000dEaD"
    payment: Any
    if attack == "underpaid":
        payment = as_sent(paid.sign(_with(required, amount="1")))
    elif attack == "underpaid-signed":
        payment = as_sent(paid.sign(required, value=1))
    elif attack == "wrong-recipient":
        payment = as_sent(paid.sign(_with(required, pay_to=stranger)))
    elif attack == "wrong-recipient-signed":
        payment = as_sent(paid.sign(required, to=stranger))
    elif attack == "wrong-asset":
        payment = as_sent(paid.sign(_with(required, asset=stranger)))
    elif attack == "wrong-network":
        payment = as_sent(paid.sign(required)) | {"accepted": as_offer(offer, "eip155:8453")}
    elif attack == "expired":
        payment = as_sent(paid.sign(required, valid_before=1_700_000_000))
    elif attack == "tampered-signature":
        signed = paid.sign(required)
        signature = signed.payload["signature"]
        flipped = signature[:-6] + ("00" if signature[-6:-4] != "00" else "11") + signature[-4:]
        payment = as_sent(tampered(signed, signature=flipped))
    else:
        payment = "definitely not a payment"
    before = balances()
    result = await paid.call("search_exploits", SEARCH, payment)
    assert result.is_error is True
    assert result.structured_content is not None, result.content
    assert result.structured_content["error"] == reason, result.content
    assert result.structured_content["accepts"] == [as_offer(offer)]  # how to pay instead
    assert balances() == before


def _with(required: PaymentRequired, **changes: Any) -> PaymentRequired:
    offer = required.accepts[0].model_copy(update=changes)
    return required.model_copy(update={"accepts": [offer]})


def as_offer(offer: PaymentRequirements, network: str | None = None) -> dict[str, Any]:
    dumped = offer.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped | ({"network": network} if network else {})


async def test_a_tool_that_fails_after_verification_charges_nothing(
    paid: Paid, balances: Callable[[], tuple[int, int]]
) -> None:
    required = await paid.offer("get_exploit", exploit_id="no_such_incident")
    payment = as_sent(paid.sign(required))
    before = balances()
    failed = await paid.call("get_exploit", {"exploit_id": "no_such_incident"}, payment)
    assert failed.is_error is True
    assert "No incident with id" in failed.content[0].text  # type: ignore[union-attr]
    assert balances() == before
    # Nothing was taken, so the same payment still buys a call that succeeds.
    good = await paid.call("get_exploit", {"exploit_id": "20230313_eulerfinance"}, payment)
    assert good.is_error is not True, good.content
    assert balances()[0] == before[0] - int(required.accepts[0].amount)


class FrontRunFacilitator:
    """The real facilitator, but someone else submits the authorization just before we settle:
    the settlement fails and the answer must be withheld."""

    def __init__(self, settings: Any) -> None:
        self.inner = LocalFacilitator(settings)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Any:
        return await self.inner.verify(payload, requirements)

    async def settle(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Any:
        await self.inner.settle(payload, requirements)  # the front-runner's submission
        return await self.inner.settle(payload, requirements)

    def extra_for(self, network: str) -> dict[str, Any]:
        return self.inner.extra_for(network)


async def test_a_payment_that_fails_to_settle_withholds_the_answer(
    loaded_runtime: Runtime, evm_chain: EvmChain
) -> None:
    async with paid_server(loaded_runtime, evm_chain, FrontRunFacilitator) as paid:
        payment = as_sent(paid.sign(await paid.offer()))
        result = await paid.call("search_exploits", SEARCH, payment)
    assert result.is_error is True
    assert result.structured_content is not None
    assert result.structured_content["x402Version"] == 2
    assert result.structured_content["error"] != "payment_required"  # the settlement's reason
    assert "incidents" not in result.structured_content
    assert "could not be settled" in result.content[1].text  # type: ignore[union-attr]


async def test_free_tools_need_no_payment(paid: Paid) -> None:
    pricing = await paid.call("get_pricing", {})
    assert pricing.is_error is not True
    assert pricing.structured_content is not None
    assert pricing.structured_content["enabled"] is True
    prices = {p["tool"]: p["amount"] for p in pricing.structured_content["tools"]}
    assert prices["search_exploits"] == str(SEARCH_PRICE)
    assert pricing.structured_content["accepts"][0]["pay_to"] == paid.chain.pay_to
    listed = {t.name: t for t in (await paid.client.list_tools()).tools}
    assert "Without a subscription: $0.05 in USDC per call" in (
        listed["assess_protocol_risk"].description or ""
    )
    assert (listed["assess_protocol_risk"].meta or {})["kamiyo/price"]["amount"] == "50000"


async def test_a_subscriber_pays_only_for_what_the_tier_lacks(
    loaded_runtime: Runtime, evm_chain: EvmChain
) -> None:
    async with loaded_runtime.sessions() as session:
        account = await accounts.create_account(
            session, f"personal-{uuid.uuid4().hex[:8]}@example.com", Tier.PERSONAL
        )
        key = (await keys.create_key(session, account, "x402")).key
        await session.commit()
    settings = evm_settings(loaded_runtime, evm_chain)
    async with paying_server(loaded_runtime, settings, credential=key) as (client, _):
        covered = await client.call_tool("search_exploits", SEARCH)
        locked = await client.call_tool(
            "check_wallet_interactions", {"wallet_address": evm_chain.pay_to}
        )
    assert covered.is_error is not True  # the subscription covers it: no offer, no charge
    assert locked.is_error is True
    assert locked.structured_content is not None
    assert locked.structured_content["accepts"][0]["amount"] == "100000"  # $0.10 instead

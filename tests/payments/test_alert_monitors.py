"""A webhook monitor bought with one x402 payment, on a real local EVM chain (anvil, our
EIP-3009 token, KAMIYO settling with its own relayer): owned by the payer for 30 days, and
listed, tested and deleted only on payments of that payer."""

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp_types import CallToolResult
from sqlalchemy import select
from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
from x402.schemas import PaymentRequired

from kamiyo.db.payments import Payment
from kamiyo.runtime import Runtime
from kamiyo.service.alert_ops import MONITOR_CALL_PRICE, MONITOR_DAYS, MONITOR_PRICE
from tests.payments.evm_chain import EvmChain, sign_exact_payment
from tests.payments.test_mcp_payments import Paid, as_sent, paid_server

pytestmark = pytest.mark.anyio

MONITOR = {"filters": {"protocols": ["Euler"]}, "webhook_url": "https://hooks.example.com/agent"}


@pytest.fixture
async def paid(loaded_runtime: Runtime, evm_chain: EvmChain) -> AsyncIterator[Paid]:
    async with paid_server(loaded_runtime, evm_chain) as served:
        yield served


async def pay_and_call(
    paid: Paid, tool: str, arguments: dict[str, Any], payer: Any = None
) -> CallToolResult:
    """Ask for the offer, sign it (as ``payer``, else the chain's payer), call with it."""
    asked = await paid.call(tool, arguments)
    assert asked.is_error is True
    assert asked.structured_content is not None
    required = PaymentRequired.model_validate(asked.structured_content)
    payment = sign_exact_payment(paid.chain, required.accepts[0], payer)
    return await paid.call(tool, arguments, as_sent(payment))


def answer(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is not True, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_one_payment_buys_a_monitor_owned_by_the_payer(paid: Paid) -> None:
    offer = await paid.offer("create_alert", **MONITOR)
    assert offer.accepts[0].amount == str(MONITOR_PRICE.amount)
    before = paid.chain.balance_of(paid.chain.payer.address)
    created = answer(await pay_and_call(paid, "create_alert", MONITOR))
    assert before - paid.chain.balance_of(paid.chain.payer.address) == MONITOR_PRICE.amount
    monitor = created["alert"]
    assert created["secret"].startswith("whsec_")
    expires = dt.datetime.fromisoformat(monitor["expires_at"])
    lasts = expires - dt.datetime.fromisoformat(monitor["created_at"])
    assert lasts == dt.timedelta(days=MONITOR_DAYS)
    assert "paying address" in created["message"]

    listing = await pay_and_call(paid, "list_alerts", {})
    listed = answer(listing)
    assert [a["alert_id"] for a in listed["alerts"]] == [monitor["alert_id"]]
    assert listed["cap"] is None
    receipt = (listing.meta or {})["x402/payment-response"]
    assert receipt["success"] is True

    # Another wallet pays for its own list: it sees none of the first payer's monitors, and
    # cannot delete them.
    stranger = paid.chain.new_payer()
    assert answer(await pay_and_call(paid, "list_alerts", {}, stranger))["alerts"] == []
    refused = await pay_and_call(paid, "delete_alert", {"alert_id": monitor["alert_id"]}, stranger)
    assert refused.is_error is True
    assert refused.structured_content is not None
    assert refused.structured_content["error"] == "not_found"

    queued = answer(await pay_and_call(paid, "test_alert", {"alert_id": monitor["alert_id"]}))
    assert queued["delivery_id"].startswith("msg_")
    deleted = answer(await pay_and_call(paid, "delete_alert", {"alert_id": monitor["alert_id"]}))
    assert deleted["cancelled_deliveries"] == 1


async def test_a_monitor_needs_a_webhook_and_is_not_charged_without_one(paid: Paid) -> None:
    asked = await paid.call("list_alerts", {})
    assert asked.structured_content is not None
    offer = PaymentRequired.model_validate(asked.structured_content)
    assert offer.accepts[0].amount == str(MONITOR_CALL_PRICE.amount)
    before = paid.chain.balance_of(paid.chain.payer.address)
    # Asked for the monitor's price, then refused (a payer has no sessions to tell) with
    # the payment left unsettled.
    asked = await paid.call("create_alert", {"filters": {}})
    assert asked.structured_content is not None
    required = PaymentRequired.model_validate(asked.structured_content)
    payment = sign_exact_payment(paid.chain, required.accepts[0])
    result = await paid.call("create_alert", {"filters": {}}, as_sent(payment))
    assert result.is_error is True
    assert result.structured_content is not None
    assert result.structured_content["error"] == "invalid_arguments"
    assert (
        "a monitor paid per call is told through its webhook"
        in (result.structured_content["message"])
    )
    assert paid.chain.balance_of(paid.chain.payer.address) == before


async def test_a_retried_monitor_payment_is_answered_without_its_secret(
    paid: Paid, loaded_runtime: Runtime
) -> None:
    asked = await paid.call("create_alert", MONITOR)
    assert asked.structured_content is not None
    required = PaymentRequired.model_validate(asked.structured_content)
    extensions = append_payment_identifier_to_extensions(dict(required.extensions or {}))
    signed = sign_exact_payment(paid.chain, required.accepts[0])
    payment = signed.model_copy(update={"extensions": extensions})  # a retry says the same id
    first = answer(await paid.call("create_alert", MONITOR, as_sent(payment)))
    secret = first["secret"]
    assert secret.startswith("whsec_")
    again = answer(await paid.call("create_alert", MONITOR, as_sent(payment)))
    assert again["alert"] == first["alert"]  # the same rule: one payment, one monitor
    assert again["secret"] is None
    assert "shown only in the first answer" in again["message"]
    async with loaded_runtime.sessions() as session:
        stored = list(await session.scalars(select(Payment.answer)))
    assert stored
    assert all(secret not in json.dumps(answer) for answer in stored)

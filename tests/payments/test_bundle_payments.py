# The fixtures ``paid`` and ``rest`` are imported from the modules that define them, so the
# tests' parameters of those names redefine the imports (F811) by design.
# ruff: noqa: F811
"""Bundles paid for on a real local EVM chain with x402's client, over MCP and REST.

One payment buys a pack of 25 risk assessments; the paid answer carries the bundle's token in
``structuredContent``; the next calls carry the token and move nothing on chain; an unusable
token falls back to the per-call price request, saying why.
"""

import json
from typing import Any

import jsonschema
import pytest
from mcp_types import Tool
from sqlalchemy import update
from x402.schemas import PaymentRequired

from kamiyo.access import paid_calls
from kamiyo.db.bundles import Bundle
from kamiyo.tiers import CallLimits
from kamiyo.web.wire import encode_header
from tests.payments.evm_chain import sign_exact_payment
from tests.payments.test_http_payments import Rest, decode, rest  # noqa: F401
from tests.payments.test_mcp_payments import Paid, as_sent, paid  # noqa: F401

pytestmark = pytest.mark.anyio

RISK = "assess_protocol_risk"
AAVE = {"protocol_name": "Aave"}
PACK, PACK_PRICE = 25, 1_000_000  # 25 risk assessments for $1.00 (catalogue.py)


def _balances(paid: Paid) -> tuple[int, int]:
    chain = paid.chain
    return chain.balance_of(chain.payer.address), chain.balance_of(chain.pay_to)


async def _output_schema(paid: Paid, tool: str) -> dict[str, Any]:
    listed = await paid.client.list_tools()
    found: Tool = next(t for t in listed.tools if t.name == tool)
    assert found.output_schema is not None
    return found.output_schema


async def _buy(paid: Paid) -> dict[str, Any]:
    asked = await paid.call(RISK, AAVE | {"x402_bundle_calls": PACK})
    assert asked.is_error is True
    required = PaymentRequired.model_validate(asked.structured_content)
    assert required.accepts[0].amount == str(PACK_PRICE)
    sentence = asked.content[1].text  # type: ignore[union-attr]
    assert "A pack of 25 assess_protocol_risk calls costs $1.00" in sentence
    payment = sign_exact_payment(paid.chain, required.accepts[0])
    bought = await paid.call(RISK, AAVE | {"x402_bundle_calls": PACK}, as_sent(payment))
    assert bought.is_error is not True, bought.content
    answer: dict[str, Any] | None = bought.structured_content
    assert answer is not None
    return answer


async def test_the_offer_lists_the_packs_and_the_tool_takes_the_bundle_arguments(
    paid: Paid,
) -> None:
    offer = await paid.offer(RISK, **AAVE)
    assert offer.extensions is not None
    packs = offer.extensions["kamiyo/bundles"]
    assert packs["packs"] == [{"calls": PACK, "amount": str(PACK_PRICE), "usd": "$1.00"}]
    listed = await paid.client.list_tools()
    risk = next(t for t in listed.tools if t.name == RISK)
    assert {"x402_bundle_calls", "x402_bundle_token"} <= set(risk.input_schema["properties"])
    stats = next(t for t in listed.tools if t.name == "get_exploit_stats")  # sells no packs
    assert "x402_bundle_token" not in stats.input_schema["properties"]


async def test_one_payment_buys_25_calls_and_the_token_pays_for_the_rest(paid: Paid) -> None:
    schema = await _output_schema(paid, RISK)
    before = _balances(paid)
    bought = await _buy(paid)
    jsonschema.validate(bought, schema)
    bundle = bought["bundle"]
    assert (bundle["tool"], bundle["calls"], bundle["remaining"]) == (RISK, PACK, PACK - 1)
    token = bundle["token"]
    assert token.startswith("kb_")
    after = _balances(paid)
    assert (before[0] - after[0], after[1] - before[1]) == (PACK_PRICE, PACK_PRICE)
    again = await paid.call(RISK, AAVE | {"x402_bundle_token": token})
    assert again.is_error is not True, again.content
    assert again.structured_content is not None
    jsonschema.validate(again.structured_content, schema)
    told = again.structured_content["bundle"]
    assert told["remaining"] == PACK - 2
    assert told.get("token") is None  # told once, in the answer that bought it
    assert json.loads(again.content[0].text)["bundle"] == told  # type: ignore[union-attr]
    # The token may ride in _meta instead of an argument.
    meta: Any = {"kamiyo/bundle-token": token}
    by_meta = await paid.client.call_tool(RISK, AAVE, meta=meta)
    assert by_meta.structured_content is not None
    assert by_meta.structured_content["bundle"]["remaining"] == PACK - 3
    assert _balances(paid) == after  # nothing more moved on chain


async def test_an_unusable_token_falls_back_to_the_price_and_says_why(paid: Paid) -> None:
    token = (await _buy(paid))["bundle"]["token"]
    other = await paid.call("check_wallet_interactions", {"wallet_address": "0x" + "1" * 40})
    assert other.is_error is True  # asks to pay: no bundle given
    wrong_tool = await paid.call(
        "check_wallet_interactions",
        {"wallet_address": "0x" + "1" * 40, "x402_bundle_token": token},
    )
    assert wrong_tool.is_error is True
    assert wrong_tool.structured_content is not None
    message = wrong_tool.structured_content["message"]
    assert message.startswith("This bundle pays for assess_protocol_risk calls only.")
    assert PaymentRequired.model_validate(wrong_tool.structured_content).accepts
    async with paid.runtime.sessions() as session:
        await session.execute(update(Bundle).values(used=Bundle.calls))
        await session.commit()
    exhausted = await paid.call(RISK, AAVE | {"x402_bundle_token": token})
    assert exhausted.structured_content is not None
    assert exhausted.structured_content["message"].startswith("This bundle has no calls left.")
    forged = await paid.call(RISK, AAVE | {"x402_bundle_token": "kb_" + "A" * 43})
    assert forged.structured_content is not None
    assert "not one this server issued" in forged.structured_content["message"]


async def test_a_pack_size_not_on_sale_is_refused_with_the_sizes(paid: Paid) -> None:
    asked = await paid.call(RISK, AAVE | {"x402_bundle_calls": 7})
    assert asked.is_error is True
    assert asked.structured_content is not None
    message = asked.structured_content["message"]
    assert message.startswith("No pack of 7 assess_protocol_risk calls: it sells packs of 25")
    # and the per-call price is what it then asks for
    assert PaymentRequired.model_validate(asked.structured_content).accepts[0].amount == "50000"


async def test_rest_buys_with_a_header_and_pays_with_the_token_header(rest: Rest) -> None:
    path = "/api/v1/risk/Aave"
    unpaid = await rest.http.get(path, headers={"Kamiyo-Bundle-Calls": str(PACK)})
    assert unpaid.status_code == 402
    required = PaymentRequired.model_validate(decode(unpaid.headers["payment-required"]))
    assert required.accepts[0].amount == str(PACK_PRICE)
    payment = sign_exact_payment(rest.chain, required.accepts[0])
    sent = encode_header(payment.model_dump(mode="json", by_alias=True, exclude_none=True))
    bought = await rest.http.get(
        path, headers={"Kamiyo-Bundle-Calls": str(PACK), "PAYMENT-SIGNATURE": sent}
    )
    assert bought.status_code == 200, bought.text
    token = bought.json()["bundle"]["token"]
    after = rest.balances()
    used = await rest.http.get(path, headers={"Kamiyo-Bundle-Token": token})
    assert used.status_code == 200, used.text
    assert used.json()["bundle"]["remaining"] == PACK - 2
    assert rest.balances() == after
    garbled = await rest.http.get(path, headers={"Kamiyo-Bundle-Calls": "lots"})
    assert garbled.status_code == 400
    assert "Kamiyo-Bundle-Calls must be the number of calls" in garbled.json()["error"]["message"]


async def test_get_usage_tells_a_bundle_s_calls_left(paid: Paid) -> None:
    token = (await _buy(paid))["bundle"]["token"]
    usage = await paid.call("get_usage", {"bundle_token": token})
    assert usage.is_error is not True, usage.content
    assert usage.structured_content is not None
    assert usage.structured_content["bundle"]["remaining"] == PACK - 1
    assert usage.structured_content["bundle"]["token"] is None  # never told again here
    unknown = await paid.call("get_usage", {"bundle_token": "kb_" + "B" * 43})
    assert unknown.is_error is True
    assert unknown.structured_content is not None
    assert unknown.structured_content["error"] == "not_found"


async def test_the_payers_limit_holds_for_bundle_calls_and_gives_the_call_back(
    paid: Paid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paid_calls, "PAID_CALLS", CallLimits(2, 1_000))
    token = (await _buy(paid))["bundle"]["token"]  # the first of the payer's two a minute
    second = await paid.call(RISK, AAVE | {"x402_bundle_token": token})
    assert second.structured_content is not None
    assert second.structured_content["bundle"]["remaining"] == PACK - 2
    third = await paid.call(RISK, AAVE | {"x402_bundle_token": token})
    assert third.is_error is True
    assert third.structured_content is not None
    assert third.structured_content["error"] == "rate_limited"
    assert "not taken from the bundle" in third.structured_content["message"]
    usage = await paid.call("get_usage", {"bundle_token": token})
    assert usage.structured_content is not None
    assert usage.structured_content["bundle"]["remaining"] == PACK - 2  # given back

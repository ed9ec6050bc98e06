"""The HTTP 402 of a payment being confirmed says when to send the same payment again."""

import json

from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo

from kamiyo.access.paid_calls import payment_refusal
from kamiyo.payments.outcomes import Declined, Quote
from kamiyo.payments.pending import SETTLEMENT_EXTENSION, confirming
from kamiyo.web.payment_answers import payment_required_response

OFFER = PaymentRequirements(
    scheme="exact",
    network="eip155:84532",
    asset="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    amount="10000",
    pay_to="0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
    max_timeout_seconds=300,
)
REQUIRED = PaymentRequired(
    x402_version=2,
    resource=ResourceInfo(url="https://kamiyo.test/api/search", description="search"),
    accepts=[OFFER],
)
QUOTE = Quote("search_exploits", 10_000, REQUIRED)


def test_a_settlement_being_confirmed_gets_retry_after_and_no_offer() -> None:
    refusal = payment_refusal(confirming(QUOTE, 7))
    for version in (1, 2):
        response = payment_required_response(refusal, "search_exploits", version, {})
        assert response.status_code == 402
        assert response.headers["retry-after"] == "7"
        body = json.loads(bytes(response.body))
        assert body["accepts"] == []  # nothing to pay again with
        assert body["extensions"][SETTLEMENT_EXTENSION]["retryAfterSeconds"] == 7


def test_an_ordinary_402_has_no_retry_after() -> None:
    refusal = payment_refusal(Declined("payment_required", "Pay to call.", REQUIRED))
    response = payment_required_response(refusal, "search_exploits", 2, {})
    assert "retry-after" not in response.headers
    assert json.loads(bytes(response.body))["accepts"]

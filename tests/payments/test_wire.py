"""Every shape a payment arrives in becomes one v2 PaymentPayload; anything else a clear refusal."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from x402.schemas import PaymentRequirements

from kamiyo.mcpserver.wire import payment_in_meta
from kamiyo.payments.outcomes import RawPayment
from kamiyo.payments.wire import MalformedPaymentError, read_payment, v2_network
from kamiyo.web.wire import encode_header, payment_in_headers

FIXTURES = Path(__file__).parents[1] / "fixtures" / "x402"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _request_payment() -> dict[str, Any]:
    request = _fixture("mcp_v2.tools_call_request.with_meta_x402_payment.json")
    payment: dict[str, Any] = request["params"]["_meta"]["x402/payment"]
    return payment


def _accepts() -> list[PaymentRequirements]:
    return [PaymentRequirements.model_validate(_request_payment()["accepted"])]


def test_the_spec_request_payload_is_read() -> None:
    raw = payment_in_meta({"x402/payment": _request_payment()})
    assert raw is not None
    payment = read_payment(raw.sent, _accepts())
    assert payment.x402_version == 2
    assert payment.accepted.network == "eip155:84532"
    assert payment.payload["authorization"]["value"] == "10000"


@pytest.mark.parametrize("shape", ["object", "json-string", "base64", "dotted-key"])
def test_every_shape_seen_in_the_wild_reads_the_same(shape: str) -> None:
    document = _request_payment()
    text = json.dumps(document)
    shapes: dict[str, dict[str, Any]] = {
        "object": {"x402/payment": document},
        "json-string": {"x402/payment": text},
        "base64": {"x402/payment": base64.b64encode(text.encode()).decode()},
        "dotted-key": {"x402.payment": document},
    }
    raw = payment_in_meta(shapes[shape])
    assert raw is not None
    assert read_payment(raw.sent, _accepts()) == read_payment(document, _accepts())


def test_the_spec_header_decodes_to_its_documented_payload() -> None:
    header = (FIXTURES / "http_v2.PAYMENT-SIGNATURE.header.txt").read_text().strip()
    decoded = _fixture("http_v2.payment_signature.decoded.json")
    raw = payment_in_headers({"payment-signature": header})
    assert raw is not None
    accepts = [PaymentRequirements.model_validate(decoded["accepted"])]
    assert read_payment(raw.sent, accepts).model_dump(by_alias=True, exclude_none=True) == decoded


def test_a_v1_header_is_taken_too() -> None:
    assert payment_in_headers({"X-PAYMENT": "abc"}) == RawPayment("abc")
    assert payment_in_headers({"Accept": "*/*"}) is None


def test_a_v1_payload_is_matched_to_our_offer_for_its_network() -> None:
    v2 = _request_payment()
    v1 = {"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": v2["payload"]}
    payment = read_payment(v1, _accepts())
    assert payment.accepted == _accepts()[0]
    assert payment.payload == v2["payload"]
    with pytest.raises(MalformedPaymentError, match=r"does not take exact payments on base$"):
        read_payment(v1 | {"network": "base"}, _accepts())


def test_v1_network_names_map_to_caip2() -> None:
    assert v2_network("base") == "eip155:8453"
    assert v2_network("solana-devnet") == "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
    assert v2_network("atlantis") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (42, "must be a JSON object, a JSON string or base64 JSON"),
        ("not json at all!", "neither JSON nor base64 of JSON"),
        ("{broken", "not valid JSON"),
        ("[1, 2]", "neither JSON nor base64"),
        (base64.b64encode(b"[1]").decode(), "must be a JSON object"),
        ({"x402Version": 3}, "no x402Version of 1 or 2"),
        ({"x402Version": 2, "payload": {}}, "accepted is field required"),
        ("A" * 70_000, "longer than 65536 characters"),
    ],
)
def test_garbage_is_refused_with_a_reason(raw: Any, message: str) -> None:
    with pytest.raises(MalformedPaymentError, match=message):
        read_payment(raw, _accepts())


def test_header_encoding_round_trips() -> None:
    document = _fixture("http_v2.payment_required.decoded.json")
    encoded = encode_header(document)
    assert json.loads(base64.b64decode(encoded)) == document

"""x402's answers over HTTP: the 402 and the receipt, in the version the client speaks.

The ``PAYMENT-REQUIRED`` header is always x402 v2 (v2 clients read only it). The body is x402
v1's PaymentRequired (``x402Version: 1``, v1 network names, ``maxAmountRequired``, the
discovery metadata in each offer's ``outputSchema``), which v1 clients read, unless the request
paid with ``PAYMENT-SIGNATURE``: that client speaks v2 and gets v2 in the body too. Either body
has ``message`` and the REST error envelope under ``problem``. The receipt of a v1 payment is
``X-PAYMENT-RESPONSE``, of a v2 one ``PAYMENT-RESPONSE``.
"""

from typing import Any

from starlette.responses import JSONResponse
from x402.schemas import SettleResponse

from kamiyo.access.gate import Refusal
from kamiyo.payments.pending import SETTLEMENT_EXTENSION
from kamiyo.payments.transfer_desk import name_the_claim
from kamiyo.payments.wire import as_v1
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.service.discovery import http_extension, listed
from kamiyo.web.errors import payment_required_body
from kamiyo.web.openapi_examples import EXAMPLES
from kamiyo.web.wire import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    TRANSFER_REFERENCE_HEADER,
    TRANSFER_SIGNATURE_HEADER,
    V1_PAYMENT_RESPONSE_HEADER,
    encode_header,
)


def receipt_headers(receipt: SettleResponse, version: int | None) -> dict[str, str]:
    name = V1_PAYMENT_RESPONSE_HEADER if version == 1 else PAYMENT_RESPONSE_HEADER
    return {name: encode_header(receipt.model_dump(mode="json", exclude_none=True))}


def payment_required_response(
    refusal: Refusal, name: str, version: int | None, headers: dict[str, str]
) -> JSONResponse:
    assert refusal.payment_required is not None
    tool = ToolName(name)
    extension = http_extension(tool, EXAMPLES.get(tool))
    required = refusal.payment_required.model_dump(mode="json", exclude_none=True)
    listed(required, tool, extension)
    message = name_the_claim(
        required, refusal.message, "headers", TRANSFER_SIGNATURE_HEADER, TRANSFER_REFERENCE_HEADER
    )
    headers = headers | {PAYMENT_REQUIRED_HEADER: encode_header(required)}
    if (confirming := required.get("extensions", {}).get(SETTLEMENT_EXTENSION)) is not None:
        # The payment is being confirmed: the same payment again after this, not a new one.
        headers["Retry-After"] = str(confirming["retryAfterSeconds"])
    offer: dict[str, Any] = required
    if version != 2:
        v1 = refusal.payment_required.model_copy(deep=True)
        assert v1.resource is not None
        v1.resource.description = required["resource"]["description"]
        offer = as_v1(v1, _v1_output_schema(tool, extension)).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        # v1 has no extensions; v1 parsers ignore the field, and agents paying by transfer
        # find the offer there as in v2.
        offer["extensions"] = required.get("extensions", {})
    body = payment_required_body(offer, message, refusal.details())
    return JSONResponse(body, 402, headers=headers)


def _v1_output_schema(tool: ToolName, extension: dict[str, Any]) -> dict[str, Any]:
    """Discovery in v1's shape (``outputSchema: {input: {type: http, method, discoverable,
    queryParams|bodyFields}, output}``, as x402's bazaar/v1 reads it)."""
    info = extension["bazaar"]["info"]["input"]
    schema = extension["bazaar"]["schema"]
    operation = CATALOGUE[tool]
    assert operation.rest is not None
    described = schema["properties"]["input"]["properties"]
    fields = "bodyFields" if operation.rest.method == "POST" else "queryParams"
    source = "body" if operation.rest.method == "POST" else "queryParams"
    v1_input: dict[str, Any] = {
        "type": "http",
        "method": info["method"],
        "discoverable": True,
        fields: described.get(source, {}).get("properties", {}),
    }
    return {"input": v1_input, "output": schema["properties"]["output"]["properties"]["example"]}

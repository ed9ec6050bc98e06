"""Reading a payment in every shape clients send it.

The surfaces find the payment (MCP in ``_meta``, HTTP in a header: each surface keeps its own
wire names) and hand it over as sent: a PaymentPayload object, a JSON string, or base64 of that
JSON, x402 v2 or v1. Every shape becomes one v2 ``PaymentPayload``; anything else is refused
with a sentence that says what was wrong.
"""

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements
from x402.schemas.v1 import PaymentPayloadV1, PaymentRequiredV1, PaymentRequirementsV1

MAX_PAYMENT_BYTES = 64 * 1024  # a payment is a signature and a few fields; a transaction at most


class MalformedPaymentError(ValueError):
    """The attached payment could not be read; the message says how."""


def read_payment(raw: Any, accepts: list[PaymentRequirements]) -> PaymentPayload:
    """One v2 PaymentPayload from any accepted shape; v1 payloads are matched to ``accepts``."""
    document = _as_document(raw)
    version = document.get("x402Version")
    try:
        if version == 2:
            return PaymentPayload.model_validate(document)
        if version == 1:
            return _from_v1(PaymentPayloadV1.model_validate(document), accepts)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MalformedPaymentError(f"the payment's {where} is {first['msg'].lower()}") from None
    raise MalformedPaymentError("the payment has no x402Version of 1 or 2")


def _as_document(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str):
        raise MalformedPaymentError(
            "the payment must be a JSON object, a JSON string or base64 JSON"
        )
    if len(raw) > MAX_PAYMENT_BYTES:
        raise MalformedPaymentError(f"the payment is longer than {MAX_PAYMENT_BYTES} characters")
    text = raw.strip()
    if not text.startswith("{"):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedPaymentError("the payment is neither JSON nor base64 of JSON") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise MalformedPaymentError("the payment is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedPaymentError("the payment must be a JSON object")
    return document


def v2_network(v1_network: str) -> str | None:
    """The CAIP-2 id of an x402 v1 network name (base, base-sepolia, solana, solana-devnet...)."""
    # Imported here: the EVM mechanism package pulls in web3 and eth_account (about a second
    # of start-up for every command), and only a v1 payment needs these two tables.
    from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
    from x402.mechanisms.svm.constants import V1_TO_V2_NETWORK_MAP

    if v1_network in V1_TO_V2_NETWORK_MAP:
        return V1_TO_V2_NETWORK_MAP[v1_network]
    chain_id = V1_NETWORK_CHAIN_IDS.get(v1_network)
    return f"eip155:{chain_id}" if chain_id is not None else None


def _from_v1(payment: PaymentPayloadV1, accepts: list[PaymentRequirements]) -> PaymentPayload:
    # A v1 payload names the scheme and network and carries the same signed authorization or
    # transaction as v2; what it accepted is our requirement for that scheme and network.
    network = v2_network(payment.network) or payment.network
    for requirement in accepts:
        if requirement.scheme == payment.scheme and requirement.network == network:
            return PaymentPayload(x402_version=2, payload=payment.payload, accepted=requirement)
    raise MalformedPaymentError(
        f"this call does not take {payment.scheme} payments on {payment.network}"
    )


def v1_network(network: str) -> str:
    """The x402 v1 name of a CAIP-2 network (base, solana-devnet...); one v1 never named
    (a local chain) keeps its CAIP-2 id, which is also how this server reads it back."""
    from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
    from x402.mechanisms.svm.constants import V1_TO_V2_NETWORK_MAP

    names = {caip2: name for name, caip2 in V1_TO_V2_NETWORK_MAP.items()}
    names |= {f"eip155:{chain_id}": name for name, chain_id in V1_NETWORK_CHAIN_IDS.items()}
    return names.get(network, network)


def as_v1(
    required: PaymentRequired, output_schema: dict[str, Any] | None = None
) -> PaymentRequiredV1:
    """The same offers as an x402 v1 PaymentRequired (the 402 body v1 clients read): each
    requirement names the resource, its description and, for directories, ``output_schema``
    (v1's place for discovery metadata)."""
    resource = required.resource
    return PaymentRequiredV1(
        error=required.error,
        accepts=[
            PaymentRequirementsV1(
                scheme=offer.scheme,
                network=v1_network(offer.network),
                max_amount_required=offer.amount,
                resource=resource.url if resource else "",
                description=resource.description if resource else None,
                mime_type=resource.mime_type if resource else None,
                pay_to=offer.pay_to,
                max_timeout_seconds=offer.max_timeout_seconds,
                asset=offer.asset,
                output_schema=output_schema,
                extra=offer.extra,
            )
            for offer in required.accepts
        ],
    )

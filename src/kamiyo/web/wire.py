"""x402 over HTTP: the header names and their encoding, the HTTP wire constants.

An unpaid request answers ``402`` with ``PAYMENT-REQUIRED`` (base64 of the JSON); the retry
carries ``PAYMENT-SIGNATURE`` (x402 v1: ``X-PAYMENT``); the answer carries ``PAYMENT-RESPONSE``.
A request buys a pack of calls with ``Kamiyo-Bundle-Calls`` or pays from one with
``Kamiyo-Bundle-Token``.
"""

import base64
import json
from collections.abc import Mapping
from typing import Any

from kamiyo.payments.bundles import BundleAsk
from kamiyo.payments.outcomes import RawPayment

PAYMENT_SIGNATURE_HEADER = "PAYMENT-SIGNATURE"
V1_PAYMENT_HEADER = "X-PAYMENT"
PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"
PAYMENT_RESPONSE_HEADER = "PAYMENT-RESPONSE"
BUNDLE_TOKEN_HEADER = "Kamiyo-Bundle-Token"  # noqa: S105 (a header name)
BUNDLE_CALLS_HEADER = "Kamiyo-Bundle-Calls"


def payment_in_headers(headers: Mapping[str, str]) -> RawPayment | None:
    """The payment an HTTP request carries, if any (header names are case-insensitive)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in (PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER):
        if value := lowered.get(name.lower()):
            return RawPayment(value)
    return None


def bundle_in_headers(headers: Mapping[str, str]) -> BundleAsk | str | None:
    """What a request asks of bundles, None when nothing, or why its header cannot be read."""
    lowered = {name.lower(): value for name, value in headers.items()}
    token = lowered.get(BUNDLE_TOKEN_HEADER.lower()) or None
    calls = lowered.get(BUNDLE_CALLS_HEADER.lower())
    if calls is not None and not (calls.isdigit() and 0 < int(calls) <= 10_000):
        return f"{BUNDLE_CALLS_HEADER} must be the number of calls of a pack (see get_pricing)"
    if token is None and calls is None:
        return None
    return BundleAsk(token, int(calls) if calls is not None else None)


def encode_header(document: Mapping[str, Any]) -> str:
    """A JSON document as an x402 HTTP header value (base64 of compact JSON)."""
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=True)
    return base64.b64encode(compact.encode()).decode()

"""x402 over HTTP: the header names and their encoding, the HTTP wire constants.

An unpaid request answers ``402`` with ``PAYMENT-REQUIRED`` (base64 of the JSON); the retry
carries ``PAYMENT-SIGNATURE`` (x402 v1: ``X-PAYMENT``); the answer carries ``PAYMENT-RESPONSE``
(to a v1 payment: ``X-PAYMENT-RESPONSE``). A plain Solana transfer (payments/transfers.py) is
claimed with ``KAMIYO-Transfer-Signature`` and ``KAMIYO-Transfer-Reference``: our own names, so
without the ``X-`` prefix (RFC 6648) and not in x402's namespace.
A request buys a pack of calls with ``Kamiyo-Bundle-Calls`` or pays from one with
``Kamiyo-Bundle-Token``.
"""

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kamiyo.payments.bundles import BundleAsk
from kamiyo.payments.outcomes import Payment, RawPayment
from kamiyo.payments.transfers import REFERENCE_MAX_CHARS, SIGNATURE_MAX_CHARS, TransferClaim

PAYMENT_SIGNATURE_HEADER = "PAYMENT-SIGNATURE"
V1_PAYMENT_HEADER = "X-PAYMENT"
PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"
PAYMENT_RESPONSE_HEADER = "PAYMENT-RESPONSE"
BUNDLE_TOKEN_HEADER = "Kamiyo-Bundle-Token"  # noqa: S105 (a header name)
BUNDLE_CALLS_HEADER = "Kamiyo-Bundle-Calls"
V1_PAYMENT_RESPONSE_HEADER = "X-PAYMENT-RESPONSE"
TRANSFER_SIGNATURE_HEADER = "KAMIYO-Transfer-Signature"
TRANSFER_REFERENCE_HEADER = "KAMIYO-Transfer-Reference"
# What a browser page on another origin may send, when CORS lets it call at all.
REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    PAYMENT_SIGNATURE_HEADER,
    V1_PAYMENT_HEADER,
    BUNDLE_TOKEN_HEADER,
    BUNDLE_CALLS_HEADER,
    TRANSFER_SIGNATURE_HEADER,
    TRANSFER_REFERENCE_HEADER,
)
TRANSFER_HEADERS = {
    TRANSFER_SIGNATURE_HEADER: SIGNATURE_MAX_CHARS,
    TRANSFER_REFERENCE_HEADER: REFERENCE_MAX_CHARS,
}


@dataclass(frozen=True, slots=True)
class SentPayment:
    """What an HTTP request pays with, and the x402 version it speaks (None: it says not)."""

    payment: Payment | None
    version: int | None


class BadTransferHeaderError(ValueError):
    """A transfer header too long to be a claim; the message names it."""


def payment_in_headers(headers: Mapping[str, str]) -> RawPayment | None:
    """The x402 payment an HTTP request carries, if any (header names are case-insensitive)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in (PAYMENT_SIGNATURE_HEADER, V1_PAYMENT_HEADER):
        if value := lowered.get(name.lower()):
            return RawPayment(value)
    return None


def sent_payment(headers: Mapping[str, str]) -> SentPayment:
    """The payment of a request: an x402 payload first (as over MCP, it wins over a transfer
    claim), else a transfer claim; half a claim is read as one, and refused when checked."""
    lowered = {name.lower(): value for name, value in headers.items()}
    raw = payment_in_headers(headers)
    if raw is not None:
        version = 2 if lowered.get(PAYMENT_SIGNATURE_HEADER.lower()) else 1
        return SentPayment(raw, version)
    signature = lowered.get(TRANSFER_SIGNATURE_HEADER.lower(), "").strip()
    reference = lowered.get(TRANSFER_REFERENCE_HEADER.lower(), "").strip()
    for name, value in (
        (TRANSFER_SIGNATURE_HEADER, signature),
        (TRANSFER_REFERENCE_HEADER, reference),
    ):
        if len(value) > TRANSFER_HEADERS[name]:
            raise BadTransferHeaderError(
                f"{name} is longer than {TRANSFER_HEADERS[name]} characters"
            )
    if not signature and not reference:
        return SentPayment(None, None)
    return SentPayment(TransferClaim(signature, reference), None)


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

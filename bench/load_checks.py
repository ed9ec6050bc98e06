"""Limits and payments across two instances, run while the load benchmark's load goes on.

- ``limit_check``: a fresh free-tier key (10 calls a minute) makes N > 10 concurrent calls, split
  between the two instances (directly, not through the proxy, so the split is exact): exactly
  10 must be admitted, the rest refused as rate limited. The instances share the limit through
  Redis.
- ``replay_check``: one x402 payment on the local anvil chain (``tests/payments/evm_chain.py``,
  the helpers the payment tests use), sent N times at once to the two instances' REST search:
  exactly one call is answered and settled, the payer's balance falls by one price, and every
  other call gets 402.
"""

import json
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kamiyo.web.wire import encode_header

FREE_PER_MINUTE = 10
REST_SEARCH = "/api/v1/exploits?query=euler"
MCP_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}


def call_tool(base: str, key: str, tool: str, arguments: dict[str, Any]) -> str:
    """One tools/call; "ok" or the refusal's error (rate_limited, ...)."""
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = MCP_HEADERS | {"Authorization": f"Bearer {key}"}
    request = urllib.request.Request(
        f"{base}/mcp", data=json.dumps(message).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        result = json.loads(response.read())["result"]
    if not result.get("isError"):
        return "ok"
    return str((result.get("structuredContent") or {}).get("error", "tool_error"))


def limit_check(instances: list[str], key: str, calls: int) -> dict[str, Any]:
    targets = [instances[i % len(instances)] for i in range(calls)]
    with ThreadPoolExecutor(calls) as pool:
        seen = list(
            pool.map(
                lambda base: call_tool(base, key, "search_exploits", {"query": "euler"}), targets
            )
        )
    outcomes = Counter(seen)
    return {
        "limit_per_minute": FREE_PER_MINUTE,
        "calls": calls,
        "outcomes": dict(outcomes),
        "passed": outcomes["ok"] == FREE_PER_MINUTE and outcomes["rate_limited"] == calls - 10,
    }


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def replay_check(instances: list[str], chain: Any, calls: int) -> dict[str, Any]:
    """N concurrent replays of one payment across the instances; exactly one settles."""
    from x402.schemas import PaymentRequired

    from tests.payments.evm_chain import sign_exact_payment
    from tests.payments.test_http_payments import decode

    status, headers, body = get(instances[0] + REST_SEARCH, {})
    if status == 200:
        offer = PaymentRequired.model_validate(json.loads(body)["paid_offer"]["payment_required"])
    else:
        lowered = {name.lower(): value for name, value in headers.items()}
        offer = PaymentRequired.model_validate(decode(lowered["payment-required"]))
    payer = chain.new_payer()
    payment = sign_exact_payment(chain, offer.accepts[0], payer)
    header = encode_header(payment.model_dump(mode="json", by_alias=True, exclude_none=True))
    before = chain.balance_of(payer.address)
    targets = [instances[i % len(instances)] + REST_SEARCH for i in range(calls)]
    with ThreadPoolExecutor(calls) as pool:
        statuses = Counter(
            pool.map(lambda url: get(url, {"PAYMENT-SIGNATURE": header})[0], targets)
        )
    paid = before - chain.balance_of(payer.address)
    price = int(offer.accepts[0].amount)
    return {
        "replays": calls,
        "statuses": {str(code): count for code, count in statuses.items()},
        "charged": paid,
        "price": price,
        "passed": statuses == Counter({200: 1, 402: calls - 1}) and paid == price,
    }

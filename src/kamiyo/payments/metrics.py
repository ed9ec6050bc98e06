"""Prometheus metrics of payments; alert rules on them live in deploy/prometheus/.

Names are the interface the rules and dashboards read: change them together.
"""

from prometheus_client import Counter, Gauge, Histogram

VERIFICATIONS = Counter(
    "kamiyo_x402_verifications",
    "Payments verified, by network and result (valid, or the refusal reason).",
    ["network", "result"],
)
VERIFICATION_SECONDS = Histogram(
    "kamiyo_x402_verification_seconds",
    "Time to verify one payment (signature, balance, simulation), by network.",
    ["network"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
SETTLEMENTS = Counter(
    "kamiyo_x402_settlements",
    "Settlements attempted, by network and result (settled, or the failure reason).",
    ["network", "result"],
)
USDC_RECEIVED = Counter(
    "kamiyo_x402_usdc_received_atomic",
    "USDC received in settled payments, in atomic units (6 decimals), by network.",
    ["network"],
)
RPC_ERRORS = Counter(
    "kamiyo_x402_rpc_errors",
    "Failed JSON-RPC requests, by endpoint host.",
    ["endpoint"],
)
VERIFIED_CACHE = Counter(
    "kamiyo_x402_verified_cache",
    "Claims of Solana transfers checked again: answered from memory (hit) or the chain (miss).",
    ["outcome"],
)
RESOLUTIONS = Counter(
    "kamiyo_x402_settlement_resolutions",
    "Settlements sent without an answer, resolved against the chain, by network and outcome "
    "(landed: answered as paid; lost: never landed, nothing taken; reconciled_landed: landed "
    "with no retry answered yet).",
    ["network", "outcome"],
)
UNRESOLVED_SETTLEMENTS = Gauge(
    "kamiyo_x402_unresolved_settlements",
    "Settlements not answered yet as the last reconcile pass found them, by state (pending: "
    "outcome unknown; landed: taken on chain, the payer not answered yet).",
    ["state"],
)

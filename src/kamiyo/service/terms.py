"""What a priced operation costs, its limits and how it fails, in words: from the one price
list (``Operation.price``) and the tier table, never typed twice. ``terms`` ends each tool's
description (MCP ``tools/list``); ``listing`` is what x402 directories list (service/discovery).
"""

from typing import Any

from kamiyo.payments.prices import PAID_MAX_RESULTS
from kamiyo.service.catalogue import Operation
from kamiyo.tiers import TIERS, Tier

# x402 directories (the Bazaar extension) list a resource by a description of fewer characters.
LISTING_MAX_CHARS = 500


def terms(operation: Operation[Any, Any], payments: bool) -> str:
    """What a call costs, its limits and how it fails, from the price list and the tier table
    (``payments``: whether this server takes x402, so whether the per-call price applies)."""
    policy = TIERS[operation.tier]
    parts = []
    if payments and operation.price is not None:
        parts.append(
            f"Without a subscription: {operation.price.describe()} in USDC per call (x402; "
            f"see get_pricing), at most {PAID_MAX_RESULTS} results; an unpaid call is answered "
            "with a payment request, and a call that fails is not charged."
        )
    if operation.tier is Tier.FREE:
        plan = "on every tier"
    else:
        plan = (
            f"from the {operation.tier.value} tier (${policy.price_usd_per_month}/month: "
            f"{policy.requests_per_minute} requests/min, {policy.max_results} results)"
        )
    parts.append(
        f"With an API key: {plan}; a lower tier is told which tier unlocks it, and a limit "
        "reached says when to retry."
    )
    return " ".join(parts)


def listing(operation: Operation[Any, Any]) -> str:
    """The description x402 directories list (under LISTING_MAX_CHARS): what it does in the
    operation's first sentence (its title when that is too long), then its terms in brief."""
    assert operation.price is not None, "only priced operations are listed"
    policy = TIERS[operation.tier]
    plan = (
        "any API key"
        if operation.tier is Tier.FREE
        else (f"the {operation.tier.value} tier (${policy.price_usd_per_month}/month) and up")
    )
    brief = (
        f"{operation.price.describe()} in USDC per call via x402, no account needed "
        f"(at most {PAID_MAX_RESULTS} results), or {plan}. An unpaid call gets a payment "
        "request; a call that fails is not charged."
    )
    first = operation.description.split(". ")[0].rstrip(".") + "."
    text = f"{first} {brief}"
    return text if len(text) < LISTING_MAX_CHARS else f"{operation.title}. {brief}"

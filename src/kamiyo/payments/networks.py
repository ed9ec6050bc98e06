"""What is payment-specific about networks: the x402 scheme KAMIYO takes.

The facts about networks and assets themselves (CAIP-2 ids, address families, Circle's USDC
deployments and their EIP-712 domains, the ``KAMIYO_X402_NETWORKS`` entry model) live in
``kamiyo.chains``, which the settings can import without importing payments.
"""

from kamiyo.chains import USDC_DECIMALS

SCHEME = "exact"

__all__ = ["SCHEME", "USDC_DECIMALS"]

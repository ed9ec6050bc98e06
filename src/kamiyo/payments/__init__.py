"""Pay per call with x402: prices, payment requirements, verification, settlement, the journal.

This package knows nothing of MCP or HTTP: surfaces hand it the payment a caller attached and
render what it answers in their own wire format.
"""

"""Outbound clients' shared machinery: the endpoint pool and its HTTP endpoints.

A bottom floor: it imports nothing else of KAMIYO, so every client to come (source feeds,
block explorers, webhook delivery, Solana RPC) builds on it.
"""

from kamiyo.outbound.http import http_endpoints, http_failure, parse_url, redact
from kamiyo.outbound.pool import (
    EndpointError,
    EndpointPool,
    PoolTimeoutError,
    PoolUnavailableError,
    check_limits,
)

__all__ = [
    "EndpointError",
    "EndpointPool",
    "PoolTimeoutError",
    "PoolUnavailableError",
    "check_limits",
    "http_endpoints",
    "http_failure",
    "parse_url",
    "redact",
]

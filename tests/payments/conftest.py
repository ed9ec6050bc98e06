"""Local chains for payment tests: anvil with our EIP-3009 token (EVM), LiteSVM (Solana)."""

from pathlib import Path

import pytest

from tests.payments.evm_chain import evm_chain
from tests.payments.solana_chain import solana_chain
from tests.x402_client.environment import client_python

__all__ = ["evm_chain", "solana_chain"]


@pytest.fixture(scope="session")
def x402_python() -> Path:
    """The interpreter of the x402 client's own environment (built once, then cached)."""
    return client_python()

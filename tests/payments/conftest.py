"""Local chains for payment tests: anvil with our EIP-3009 token (EVM), LiteSVM (Solana)."""

from tests.payments.evm_chain import evm_chain
from tests.payments.solana_chain import solana_chain

__all__ = ["evm_chain", "solana_chain"]

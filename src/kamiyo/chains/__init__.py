"""The chain vocabulary: slugs and aliases, CAIP-2 and EVM ids, address families, assets.

A bottom floor: it imports nothing else of KAMIYO, so intel, payments and the settings can all
speak it.
"""

from kamiyo.chains.accepted import AcceptedNetwork
from kamiyo.chains.addresses import (
    address_family,
    checked_address,
    evm_checksum_matches,
    normalize_address,
    normalize_tx_hash,
)
from kamiyo.chains.assets import USDC, USDC_DECIMALS, AssetDeployment
from kamiyo.chains.registry import (
    BASE,
    BASE_SEPOLIA,
    CHAINS,
    SOLANA,
    SOLANA_DEVNET,
    AddressFamily,
    Chain,
    chain_by_caip2,
    family_of,
    find_chain,
    get_chain,
    known_slugs,
    normalize_chain,
)

__all__ = [
    "BASE",
    "BASE_SEPOLIA",
    "CHAINS",
    "SOLANA",
    "SOLANA_DEVNET",
    "USDC",
    "USDC_DECIMALS",
    "AcceptedNetwork",
    "AddressFamily",
    "AssetDeployment",
    "Chain",
    "address_family",
    "chain_by_caip2",
    "checked_address",
    "evm_checksum_matches",
    "family_of",
    "find_chain",
    "get_chain",
    "known_slugs",
    "normalize_address",
    "normalize_chain",
    "normalize_tx_hash",
]

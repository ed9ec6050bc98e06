"""Assets on chains: Circle's USDC deployments, with the EIP-712 domains their EVM tokens sign.

Addresses and domains as recorded in DESIGN.md (Circle's own deployments). EIP-3009 transfer
authorizations are signed over the token's EIP-712 domain, so a wrong name or version makes every
signature fail to verify: they belong with the address, not with whoever uses it.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from kamiyo.chains.registry import BASE, BASE_SEPOLIA, SOLANA, SOLANA_DEVNET

USDC_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class AssetDeployment:
    network: str  # CAIP-2
    label: str  # the network's display name, as shown to payers
    address: str  # the token contract (EVM) or mint (Solana)
    decimals: int
    # The token's EIP-712 domain (EVM only).
    eip712_name: str | None = None
    eip712_version: str | None = None


USDC: Mapping[str, AssetDeployment] = MappingProxyType(
    {
        BASE: AssetDeployment(
            BASE,
            "Base",
            "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            USDC_DECIMALS,
            "USD Coin",
            "2",
        ),
        BASE_SEPOLIA: AssetDeployment(
            BASE_SEPOLIA,
            "Base Sepolia",
            "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            USDC_DECIMALS,
            "USDC",
            "2",
        ),
        SOLANA: AssetDeployment(
            SOLANA, "Solana", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", USDC_DECIMALS
        ),
        SOLANA_DEVNET: AssetDeployment(
            SOLANA_DEVNET,
            "Solana devnet",
            "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
            USDC_DECIMALS,
        ),
    }
)

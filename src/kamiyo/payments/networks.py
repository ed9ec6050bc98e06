"""Facts about the networks and assets KAMIYO accepts: the one place for these wire constants.

Networks are CAIP-2 ids. USDC addresses and EIP-712 domains are Circle's deployments as recorded
in DESIGN.md; a local test chain names its own asset in the settings.
"""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Family = Literal["evm", "svm"]
USDC_DECIMALS = 6
SCHEME = "exact"

BASE = "eip155:8453"
BASE_SEPOLIA = "eip155:84532"
SOLANA = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
SOLANA_DEVNET = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"


@dataclass(frozen=True, slots=True)
class KnownNetwork:
    label: str
    usdc: str
    # The token's EIP-712 domain (EVM only): the authorization is signed over it.
    eip712_name: str | None = None
    eip712_version: str | None = None


KNOWN_NETWORKS: dict[str, KnownNetwork] = {
    BASE: KnownNetwork("Base", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2"),
    BASE_SEPOLIA: KnownNetwork(
        "Base Sepolia", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2"
    ),
    SOLANA: KnownNetwork("Solana", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"),
    SOLANA_DEVNET: KnownNetwork("Solana devnet", "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"),
}


def family_of(network: str) -> Family:
    if network.startswith("eip155:"):
        return "evm"
    if network.startswith("solana:"):
        return "svm"
    raise ValueError(f"{network!r} is not an eip155:* or solana:* network id")


class AcceptedNetwork(BaseModel):
    """One network payments are taken on (an entry of ``KAMIYO_X402_NETWORKS``)."""

    network: str = Field(description="CAIP-2 id, e.g. eip155:8453 (Base).")
    pay_to: str = Field(description="Address that receives USDC (Solana: the owner, not the ATA).")
    asset: str | None = Field(
        default=None, description="USDC contract or mint; unset means Circle's USDC there."
    )
    rpc_urls: list[str] = Field(
        default_factory=list, description="JSON-RPC endpoints, tried in turn (failover)."
    )
    eip712_name: str | None = None
    eip712_version: str | None = None

    @model_validator(mode="after")
    def _known_or_complete(self) -> "AcceptedNetwork":
        family_of(self.network)
        known = KNOWN_NETWORKS.get(self.network)
        if self.asset is None:
            if known is None:
                raise ValueError(f"{self.network} is not a known network: give its USDC asset")
            self.asset = known.usdc
        if self.family == "evm":
            # Circle's domain applies only to Circle's token; any other asset names its own.
            if known is not None and known.usdc.lower() == self.asset.lower():
                self.eip712_name = self.eip712_name or known.eip712_name
                self.eip712_version = self.eip712_version or known.eip712_version
            if not (self.eip712_name and self.eip712_version):
                raise ValueError(f"{self.network}: give the asset's eip712_name and version")
        return self

    @property
    def family(self) -> Family:
        return family_of(self.network)

    @property
    def label(self) -> str:
        known = KNOWN_NETWORKS.get(self.network)
        return known.label if known else self.network

    @property
    def usdc(self) -> str:
        assert self.asset is not None  # set by the validator
        return self.asset

"""A network the operator takes payment on: an entry of ``KAMIYO_X402_NETWORKS``.

It lives with the chain facts rather than with payments so that the settings, a bottom floor,
can declare it without importing the payments package. It knows only where and what: the
network, the asset (Circle's USDC unless told otherwise), its EIP-712 domain on EVM, the pay-to
address and the RPC endpoints to read the chain through.
"""

from pydantic import BaseModel, Field, model_validator

from kamiyo.chains.assets import USDC
from kamiyo.chains.registry import AddressFamily, chain_by_caip2, family_of

PAYABLE_FAMILIES = (AddressFamily.EVM, AddressFamily.SOLANA)


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
        if family_of(self.network) not in PAYABLE_FAMILIES:
            raise ValueError(f"{self.network}: payments are taken on eip155:* and solana:* only")
        known = USDC.get(self.network)
        if self.asset is None:
            if known is None:
                raise ValueError(f"{self.network} is not a known network: give its USDC asset")
            self.asset = known.address
        if self.family is AddressFamily.EVM:
            # Circle's domain applies only to Circle's token; any other asset names its own.
            if known is not None and known.address.lower() == self.asset.lower():
                self.eip712_name = self.eip712_name or known.eip712_name
                self.eip712_version = self.eip712_version or known.eip712_version
            if not (self.eip712_name and self.eip712_version):
                raise ValueError(f"{self.network}: give the asset's eip712_name and version")
        return self

    @property
    def family(self) -> AddressFamily:
        return family_of(self.network)

    @property
    def label(self) -> str:
        known = USDC.get(self.network)
        if known is not None:
            return known.label
        chain = chain_by_caip2(self.network)
        return chain.name if chain is not None else self.network

    @property
    def usdc(self) -> str:
        assert self.asset is not None  # set by the validator
        return self.asset

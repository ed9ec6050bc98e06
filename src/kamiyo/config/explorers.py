"""Where wallet and transaction screening read the chain: explorer URLs per EVM chain, the
Etherscan key, Solana RPC endpoints, and how hard to press them.

The defaults per chain are in ``kamiyo.explorers.providers`` (Blockscout where it is known,
Etherscan V2 for the chains its free tier serves once a key is set); ``KAMIYO_EXPLORER_URLS``
adds chains or replaces a default, and an empty URL turns one off.
"""

from typing import Annotated

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from kamiyo.chains import AddressFamily, find_chain
from kamiyo.config.base import Section, json_setting, section_config

_URLS_EXAMPLE = '{"base": "https://base.blockscout.com/api"}'
_RPC_EXAMPLE = '["https://api.mainnet-beta.solana.com"]'


def _http(url: str, what: str, example: str) -> None:
    try:
        AnyHttpUrl(url)
    except ValueError:
        raise ValueError(f"is not an http(s) URL for {what}: write {example}") from None


class ExplorerSettings(Section):
    """Explorer and RPC endpoints of the history reads (``open_explorers`` takes this)."""

    model_config = section_config("KAMIYO_EXPLORER_")

    defaults: bool = Field(
        default=True,
        description="Use the public default explorers (Blockscout; Etherscan V2 with a key) "
        "for the chains KAMIYO_EXPLORER_URLS does not name; false: only those it names.",
    )
    urls: Annotated[dict[str, str], NoDecode, json_setting(_URLS_EXAMPLE)] = Field(
        default_factory=dict,
        description="Etherscan-format API base URL per EVM chain slug, over the defaults.",
    )
    etherscan_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="KAMIYO_ETHERSCAN_API_KEY",
        description="Etherscan V2 key: turns on Etherscan for the chains its free tier serves.",
    )
    solana_rpc_urls: Annotated[list[str], NoDecode, json_setting(_RPC_EXAMPLE)] = Field(
        default_factory=list,
        validation_alias="KAMIYO_SOLANA_RPC_URLS",
        description="Solana mainnet JSON-RPC endpoints (failover between them); empty: none.",
    )
    timeout_s: float = Field(default=10, gt=0, description="Seconds one request may take.")
    calls_per_second: float = Field(
        default=5, gt=0, le=1000, description="Requests a second to one provider."
    )
    # Etherscan serves at most page x offset = 10,000 records of a list: 10 pages of 1,000.
    max_pages: int = Field(
        default=10, ge=1, le=10, description="Pages of 1,000 records read per list."
    )
    budget_s: float = Field(
        default=20,
        gt=0,
        le=50,
        description="Seconds a screen may spend reading histories (hosts cancel a tool call "
        "after about 60); what was read by then is kept and the answer says it is partial.",
    )
    cache_ttl_s: float = Field(
        default=300,
        ge=0,
        description="How long a history read whole (or up to a page cap) is kept for the next "
        "screen of that address; 0: never kept.",
    )
    allow_private: bool = Field(
        default=False,
        description="Read from loopback and private addresses (local explorers, tests).",
    )

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: dict[str, str]) -> dict[str, str]:
        for name, url in urls.items():
            chain = find_chain(name)
            if chain is None:
                raise ValueError(
                    f"names {name[:40]!r}, which is not a chain KAMIYO knows: use slugs such "
                    f"as ethereum, base, bsc, e.g. {_URLS_EXAMPLE}"
                )
            if chain.family is not AddressFamily.EVM:
                raise ValueError(
                    f"names {chain.slug}, which is not an EVM chain: explorer URLs are for EVM "
                    "chains (Solana is read through KAMIYO_SOLANA_RPC_URLS)"
                )
            if url.strip():
                _http(url, name, _URLS_EXAMPLE)
        return urls

    @field_validator("solana_rpc_urls")
    @classmethod
    def _http_rpc_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            _http(url, "Solana RPC", _RPC_EXAMPLE)
        return urls

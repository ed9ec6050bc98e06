"""Which explorer serves which chain by default, and the facts about providers the clients need.

Etherscan V2 serves many chains behind one URL (``chainid`` picks the chain) but its free tier
does not serve Base, BNB Smart Chain, OP Mainnet or Avalanche, and it needs a key; Blockscout
instances speak the same module/action format without a key (5 requests a second shared).
So: Etherscan V2 for the chains its free tier serves when a key is set, a Blockscout instance
where one is known, nothing where no default could be confirmed (set ``KAMIYO_EXPLORER_URLS``).
Sources: docs.etherscan.io/supported-chains (free-tier availability, 2026), docs.blockscout.com
(instance URLs eth/base/optimism.blockscout.com, rate limits), shared research notes
anchors-2026-12.md §1.2.
"""

from collections.abc import Mapping
from types import MappingProxyType

ETHERSCAN_V2 = "https://api.etherscan.io/v2/api"
# Chains Etherscan V2's free tier serves (docs.etherscan.io/supported-chains.md).
ETHERSCAN_FREE = frozenset({"ethereum", "polygon", "arbitrum", "linea", "blast"})
# Public Blockscout instances confirmed in Blockscout's documentation.
BLOCKSCOUT: Mapping[str, str] = MappingProxyType(
    {
        "ethereum": "https://eth.blockscout.com/api",
        "base": "https://base.blockscout.com/api",
        "optimism": "https://optimism.blockscout.com/api",
    }
)
# Etherscan V2 allows 5 calls a second on the free tier, Blockscout 5 shared without a key.
DEFAULT_CALLS_PER_SECOND = 5.0

NATIVE_DECIMALS = 18
_NATIVE_SYMBOL: Mapping[str, str] = MappingProxyType(
    {
        "bsc": "BNB",
        "polygon": "POL",
        "avalanche": "AVAX",
        "gnosis": "xDAI",
        "fantom": "FTM",
        "ethereum-classic": "ETC",
        "mantle": "MNT",
        "ronin": "RON",
        "sonic": "S",
        "moonbeam": "GLMR",
        "moonriver": "MOVR",
        "metis": "METIS",
        "harmony": "ONE",
        "sei": "SEI",
    }
)


def native_symbol(chain: str) -> str:
    """The chain's coin (ETH on Ethereum and its rollups)."""
    return _NATIVE_SYMBOL.get(chain, "ETH")


def default_urls(*, etherscan_key: bool) -> dict[str, str]:
    """chain slug -> Etherscan-format API base URL, before the operator's own settings."""
    urls = dict(BLOCKSCOUT)
    if etherscan_key:
        urls.update(dict.fromkeys(ETHERSCAN_FREE, ETHERSCAN_V2))
    return urls


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def speaks_etherscan_v2(url: str) -> bool:
    """An Etherscan V2 endpoint: ``…/v2/api`` on an etherscan.io host (or on loopback, where
    tests and local emulators run). It takes ``chainid``, and only it is sent the Etherscan
    key: a Blockscout (whose PRO API is also ``/v2/api``) or Routescan URL never sees it."""
    import httpx2  # here: the defaults table is read where no client is ever opened

    parsed = httpx2.URL(url)
    host = parsed.host.lower()
    etherscan = host == "etherscan.io" or host.endswith(".etherscan.io") or host in _LOOPBACK
    return etherscan and parsed.path.rstrip("/").endswith("/v2/api")

"""Every source adapter, in refresh order."""

from kamiyo.intel.sources import (
    defihacklabs,
    defillama,
    defillama_protocols,
    notable,
    ofac,
    rekt,
    slowmist,
    web3isgoinggreat,
)
from kamiyo.intel.sources.base import Adapter

# Refreshed in this order: the protocol registry first, then the sources whose items carry
# the hardest keys (transactions, addresses, DeFiLlama ids), then the news feeds, whose items
# resolve best against what the others brought.
ADAPTERS: tuple[Adapter, ...] = (
    defillama_protocols.ADAPTER,
    notable.ADAPTER,
    defihacklabs.ADAPTER,
    defillama.ADAPTER,
    slowmist.ADAPTER,
    rekt.ADAPTER,
    web3isgoinggreat.ADAPTER,
    ofac.ADAPTER,  # a sanctions list, not incidents: nothing resolves against it
)
DISTINCT_SOURCES = frozenset(a.info.name for a in ADAPTERS if a.info.distinct_items)

"""Source adapters, one module each, behind the interface in ``base.py``; the registry."""

from kamiyo.intel.sources import notable
from kamiyo.intel.sources.base import Adapter

# Refreshed in this order: a registry first (its names help resolution), then the sources
# whose items carry the hardest keys (transactions, addresses), then the news feeds.
ADAPTERS: tuple[Adapter, ...] = (notable.ADAPTER,)
DISTINCT_SOURCES = frozenset(a.info.name for a in ADAPTERS if a.info.distinct_items)

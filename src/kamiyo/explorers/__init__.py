"""Reading a wallet's and a transaction's history from the chain.

One client for the Etherscan module/action API (Etherscan V2, Blockscout, Routescan), one for
Solana JSON-RPC, the same models out of both (:class:`History`, :class:`TransactionView`), and
:func:`open_explorers` to build them from ``settings.explorers``. Every read is bounded by a
deadline and says what it could not read; nothing here judges what it read (the screening in
intel does).

A bottom floor: it imports only ``kamiyo.chains`` and ``kamiyo.outbound`` (never the settings,
so intel may use it).
"""

from kamiyo.explorers.hub import (
    ExplorerNotConfiguredError,
    ExplorerOptions,
    Explorers,
    open_explorers,
)
from kamiyo.explorers.models import (
    Approval,
    History,
    TransactionStatus,
    TransactionView,
    Transfer,
    TransferKind,
)
from kamiyo.explorers.providers import BLOCKSCOUT, ETHERSCAN_FREE, ETHERSCAN_V2, default_urls
from kamiyo.explorers.scan import ExplorerError, Progress, deadline_in

__all__ = [
    "BLOCKSCOUT",
    "ETHERSCAN_FREE",
    "ETHERSCAN_V2",
    "Approval",
    "ExplorerError",
    "ExplorerNotConfiguredError",
    "ExplorerOptions",
    "Explorers",
    "History",
    "Progress",
    "TransactionStatus",
    "TransactionView",
    "Transfer",
    "TransferKind",
    "deadline_in",
    "default_urls",
    "open_explorers",
]

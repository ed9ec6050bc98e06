"""Reading a wallet's and a transaction's history from the chain.

One client for the Etherscan module/action API (Etherscan V2, Blockscout, Routescan), one for
Solana JSON-RPC, the same models out of both (:class:`History`, :class:`TransactionView`), and
:func:`open_explorers` to build them from ``settings.explorers``. Every read is bounded by a
deadline and says what it could not read; nothing here judges what it read (the screening in
intel does).

A bottom floor: it imports only ``kamiyo.chains`` and ``kamiyo.outbound`` (never the settings,
so intel may use it).

The clients (``hub.py``) load when first named: the models and the deadline are all intel
needs to import, and httpx2 costs a command that never screens ~0.1 s to import.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from kamiyo.explorers.hub import (
        ExplorerNotConfiguredError,
        ExplorerOptions,
        Explorers,
        check_explorers,
        open_explorers,
    )

_IN_HUB = frozenset(
    {
        "ExplorerNotConfiguredError",
        "ExplorerOptions",
        "Explorers",
        "check_explorers",
        "open_explorers",
    }
)


def __getattr__(name: str) -> Any:
    if name in _IN_HUB:
        from kamiyo.explorers import hub

        return getattr(hub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "check_explorers",
    "deadline_in",
    "default_urls",
    "open_explorers",
]

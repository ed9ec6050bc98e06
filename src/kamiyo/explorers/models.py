"""What the explorer clients read from a chain: transfers, approvals, a history, one transaction.

Plain frozen dataclasses: the screening above reads them, nothing here judges them. Addresses
are in the form :func:`kamiyo.chains.normalize_address` keeps (EVM lower case, Solana base58
as is), transaction hashes as :func:`kamiyo.chains.normalize_tx_hash` does, times in UTC.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# native: the chain's coin moved by a transaction itself (a normal transaction, or a System
# Program transfer on Solana; a contract call moving 0 is one too: it shows the interaction);
# internal: the coin moved by a contract during a transaction (EVM traces); token: ERC-20 or
# SPL Token.
TransferKind = Literal["native", "internal", "token"]
TransactionStatus = Literal["success", "failed", "pending", "not_found", "unknown"]


@dataclass(frozen=True, slots=True)
class Transfer:
    """One movement of value (or a zero-value call) seen in a transaction."""

    chain: str
    tx_hash: str
    block: int
    time: datetime | None  # None where the provider gave none (a pending or very old entry)
    sender: str
    recipient: str | None  # None: a contract creation
    kind: TransferKind
    token: str | None  # the token's contract or mint; None for the native coin
    symbol: str | None  # as the provider names it (ETH, SOL, USDC); None when unknown
    decimals: int | None  # None when unknown (a token seen only in a receipt's logs)
    raw_amount: int  # in the token's smallest unit
    succeeded: bool = True  # a failed transaction moved nothing, but it did call the recipient

    @property
    def amount(self) -> float | None:
        """``raw_amount`` in whole units; None when the decimals are unknown."""
        if self.decimals is None:
            return None
        return self.raw_amount / float(10**self.decimals)


@dataclass(frozen=True, slots=True)
class Approval:
    """The latest ERC-20 allowance ``owner`` gave ``spender`` over ``token`` (from Approval
    logs: a later ``transferFrom`` that spends it without a new event is not seen)."""

    chain: str
    owner: str
    spender: str
    token: str
    raw_value: int  # 0: revoked; 2**256 - 1: unlimited
    tx_hash: str
    block: int
    time: datetime | None

    @property
    def unlimited(self) -> bool:
        return self.raw_value >= 2**255  # "infinite" approvals are max uint256, or near it


@dataclass(frozen=True, slots=True)
class History:
    """What one provider told about one address on one chain, and how completely.

    ``truncated`` says the read stopped before the end (the page cap, the time budget, a
    failure): the transfers are then a part of the history, never proof that nothing else
    happened. ``failures`` are one line each, without URLs or keys.
    """

    address: str
    chain: str
    provider: str  # host[:port] of the explorer or RPC endpoints read
    transfers: tuple[Transfer, ...] = ()
    approvals: tuple[Approval, ...] = ()
    transactions_scanned: int = 0  # distinct transactions the transfers came from
    truncated: bool = False
    failures: tuple[str, ...] = ()
    # Some request failed or the budget ran out (not merely a page cap): a read again later
    # could get more.
    failed: bool = False
    calls: int = 0  # HTTP requests made to the provider (retries included)
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Everything was read: no cap, budget or failure cut it short."""
        return not self.truncated and not self.failures


@dataclass(frozen=True, slots=True)
class TransactionView:
    """One transaction: who sent it to whom, whether it succeeded, and the value it moved
    (its native value, internal transfers, and ERC-20 / SPL transfers)."""

    tx_hash: str
    chain: str
    provider: str
    status: TransactionStatus
    sender: str | None = None
    recipient: str | None = None  # None: a contract creation (or not found)
    block: int | None = None
    time: datetime | None = None
    transfers: tuple[Transfer, ...] = ()
    failures: tuple[str, ...] = field(default=())
    calls: int = 0

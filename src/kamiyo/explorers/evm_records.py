"""Records of the Etherscan format, read into transfers and approvals.

Account lists (``txlist``, ``txlistinternal``, ``tokentx``) give numbers as decimal strings;
logs and the JSON-RPC proxy give them as 0x-hex. Etherscan and Blockscout name the fields
alike (Blockscout sorts the keys and leaves out ``functionName``); a record missing the fields
a transfer needs is skipped rather than guessed at.
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kamiyo.explorers.models import Approval, Transfer
from kamiyo.explorers.providers import NATIVE_DECIMALS

# keccak256("Approval(address,address,uint256)") and ("Transfer(address,address,uint256)").
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
_ERC20_TOPICS = 3  # ERC-721 puts the token id in a fourth topic: not an allowance

Row = dict[str, Any]


def to_int(value: object) -> int:
    """A decimal or 0x-hex number as the providers write them; ValueError otherwise."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lower().startswith("0x"):
        return int(text, 16) if len(text) > 2 else 0
    return int(text)


def utc(value: object) -> datetime | None:
    """A Unix timestamp (decimal or hex) in UTC; None when absent or unreadable."""
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(to_int(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _address(value: object) -> str | None:
    text = str(value or "").strip().lower()
    return text if len(text) == 42 and text.startswith("0x") else None


def _topic_address(topic: str) -> str | None:
    return _address("0x" + topic[-40:]) if len(topic) == 66 else None


def normal_transfer(
    chain: str, row: Row, symbol: str, *, time: datetime | None = None
) -> Transfer | None:
    """A normal transaction: its native value (a call moving 0 is kept: an interaction)."""
    sender = _address(row.get("from"))
    try:
        value = to_int(row.get("value") or 0)
        block = to_int(row.get("blockNumber"))
    except ValueError:
        return None
    if sender is None or not row.get("hash"):
        return None
    recipient = _address(row.get("to")) or _address(row.get("contractAddress"))
    return Transfer(
        chain=chain,
        tx_hash=str(row["hash"]).lower(),
        block=block,
        time=time or utc(row.get("timeStamp")),
        sender=sender,
        recipient=recipient,
        kind="native",
        token=None,
        symbol=symbol,
        decimals=NATIVE_DECIMALS,
        raw_amount=value,
        succeeded=str(row.get("isError", "0")) != "1",
    )


def internal_transfer(chain: str, row: Row, symbol: str) -> Transfer | None:
    """Value a contract moved during a transaction (a trace); zero-value traces are skipped."""
    sender = _address(row.get("from"))
    try:
        value = to_int(row.get("value") or 0)
        block = to_int(row.get("blockNumber"))
    except ValueError:
        return None
    tx_hash = row.get("hash") or row.get("transactionHash")
    if sender is None or not tx_hash or value == 0:
        return None
    return Transfer(
        chain=chain,
        tx_hash=str(tx_hash).lower(),
        block=block,
        time=utc(row.get("timeStamp")),
        sender=sender,
        recipient=_address(row.get("to")) or _address(row.get("contractAddress")),
        kind="internal",
        token=None,
        symbol=symbol,
        decimals=NATIVE_DECIMALS,
        raw_amount=value,
        succeeded=str(row.get("isError", "0")) != "1",
    )


def token_transfer(chain: str, row: Row) -> Transfer | None:
    """An ERC-20 transfer from ``tokentx``."""
    sender, recipient = _address(row.get("from")), _address(row.get("to"))
    token = _address(row.get("contractAddress"))
    try:
        value = to_int(row.get("value") or 0)
        block = to_int(row.get("blockNumber"))
        decimals: int | None = to_int(row["tokenDecimal"]) if row.get("tokenDecimal") else None
    except ValueError:
        return None
    if sender is None or token is None or not row.get("hash"):
        return None
    return Transfer(
        chain=chain,
        tx_hash=str(row["hash"]).lower(),
        block=block,
        time=utc(row.get("timeStamp")),
        sender=sender,
        recipient=recipient,
        kind="token",
        token=token,
        symbol=str(row["tokenSymbol"]) if row.get("tokenSymbol") else None,
        decimals=decimals,
        raw_amount=value,
    )


def _log_position(log: Row) -> tuple[int, int]:
    try:
        return to_int(log.get("blockNumber")), to_int(log.get("logIndex") or 0)
    except ValueError:
        return (0, 0)


def approvals_from_logs(chain: str, owner: str, logs: Iterable[Row]) -> tuple[Approval, ...]:
    """The latest ERC-20 Approval per (token, spender) among ``owner``'s logs, newest first."""
    latest: dict[tuple[str, str], tuple[tuple[int, int], Approval]] = {}
    for log in logs:
        topics = log.get("topics") or []
        if len(topics) != _ERC20_TOPICS or str(topics[0]).lower() != APPROVAL_TOPIC:
            continue
        token, spender = _address(log.get("address")), _topic_address(str(topics[2]))
        if token is None or spender is None or _topic_address(str(topics[1])) != owner:
            continue
        try:
            value = to_int(log.get("data") or "0x0")
        except ValueError:
            continue
        position = _log_position(log)
        approval = Approval(
            chain=chain,
            owner=owner,
            spender=spender,
            token=token,
            raw_value=value,
            tx_hash=str(log.get("transactionHash", "")).lower(),
            block=position[0],
            time=utc(log.get("timeStamp")),
        )
        seen = latest.get((token, spender))
        if seen is None or position > seen[0]:
            latest[(token, spender)] = (position, approval)
    ordered = sorted(latest.values(), key=lambda item: item[0], reverse=True)
    return tuple(approval for _, approval in ordered)


def receipt_transfers(
    chain: str, tx_hash: str, block: int, time: datetime | None, receipt: Row
) -> list[Transfer]:
    """The ERC-20 Transfer logs of a receipt (symbol and decimals are not in a receipt)."""
    found: list[Transfer] = []
    for log in receipt.get("logs") or []:
        topics = log.get("topics") or []
        if len(topics) != _ERC20_TOPICS or str(topics[0]).lower() != TRANSFER_TOPIC:
            continue
        token = _address(log.get("address"))
        sender, recipient = _topic_address(str(topics[1])), _topic_address(str(topics[2]))
        try:
            value = to_int(log.get("data") or "0x0")
        except ValueError:
            continue
        if token is None or sender is None:
            continue
        found.append(
            Transfer(
                chain=chain,
                tx_hash=tx_hash,
                block=block,
                time=time,
                sender=sender,
                recipient=recipient,
                kind="token",
                token=token,
                symbol=None,
                decimals=None,
                raw_amount=value,
            )
        )
    return found

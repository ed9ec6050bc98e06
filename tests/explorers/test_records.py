"""The recorded Etherscan and Blockscout records read into transfers; approval logs."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kamiyo.explorers.evm_records import (
    APPROVAL_TOPIC,
    approvals_from_logs,
    normal_transfer,
    to_int,
    token_transfer,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "explorers"
OWNER = "0x4e83362442b8d1bec281594cea3050c8eb01311c"
SPENDER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
TOKEN = "0x9f8f72aa9304c8b593d555f12ef6589cc3a579a2"


def _first(name: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads((FIXTURES / name).read_text())["result"][0]
    return row


def test_an_etherscan_v2_normal_transaction() -> None:
    moved = normal_transfer("ethereum", _first("etherscan_v2_txlist.json"), "ETH")
    assert moved is not None
    assert moved.tx_hash == "0xf9db905d77704596d3600816bc70201586cfeec13bcf576320e2f38d6ca851a0"
    assert (moved.block, moved.kind, moved.raw_amount, moved.amount) == (23467053, "native", 0, 0.0)
    assert moved.sender == "0x2449ecef5012f0a0e153b278ef4fcc9625bc4c78"
    assert moved.recipient == "0xc5102fe9359fd9a28f877a67e36b0f050d81a3cc"
    assert moved.time == datetime.fromtimestamp(1759129619, UTC)
    assert moved.succeeded


@pytest.mark.parametrize(
    ("name", "block", "raw"),
    [
        ("etherscan_v2_tokentx.json", 4730207, 5901522149285533025181),
        ("blockscout_tokentx.json", 5997843, 10 * 10**18),
    ],
)
def test_token_transfers_in_both_flavours(name: str, block: int, raw: int) -> None:
    moved = token_transfer("ethereum", _first(name))
    assert moved is not None
    assert (moved.kind, moved.block, moved.raw_amount) == ("token", block, raw)
    assert (moved.token, moved.symbol, moved.decimals) == (TOKEN, "MKR", 18)
    assert moved.amount == pytest.approx(raw / 10**18)


def test_a_blockscout_normal_transaction_has_no_function_name_and_still_reads() -> None:
    row = _first("blockscout_txlist.json")
    assert "functionName" not in row
    moved = normal_transfer("ethereum", row, "ETH")
    assert moved is not None
    assert (moved.block, moved.recipient) == (65204, "0xde0b295669a9fd93d5f28d9ec85e40f4cb697bae")


def test_a_record_without_the_fields_of_a_transfer_is_skipped() -> None:
    row = _first("etherscan_v2_txlist.json") | {"blockNumber": "pending"}
    assert normal_transfer("ethereum", row, "ETH") is None
    assert token_transfer("ethereum", {"hash": "0x1"}) is None


def _log(
    spender: str, value: int, block: int, index: int = 0, *, nft: bool = False
) -> dict[str, Any]:
    topics = [APPROVAL_TOPIC, "0x" + OWNER[2:].rjust(64, "0"), "0x" + spender[2:].rjust(64, "0")]
    if nft:
        topics.append("0x" + "0" * 63 + "7")
    return {
        "address": TOKEN,
        "topics": topics,
        "data": "0x" + format(value, "064x") if not nft else "0x",
        "blockNumber": hex(block),
        "logIndex": hex(index),
        "timeStamp": hex(1_700_000_000),
        "transactionHash": f"0x{block:064x}",
    }


def test_the_latest_approval_per_token_and_spender_wins() -> None:
    logs = [_log(SPENDER, 0, 12, 1), _log(SPENDER, 500, 12, 0), _log(SPENDER, 10, 11)]
    [approval] = approvals_from_logs("ethereum", OWNER, logs)
    assert (approval.raw_value, approval.block, approval.spender) == (0, 12, SPENDER)
    assert not approval.unlimited


def test_nft_approvals_and_other_owners_logs_are_not_allowances() -> None:
    other = _log(SPENDER, 5, 3) | {"topics": [APPROVAL_TOPIC, "0x" + "0" * 64, "0x" + "0" * 64]}
    assert approvals_from_logs("ethereum", OWNER, [_log(SPENDER, 0, 2, nft=True), other]) == ()


def test_numbers_in_both_notations() -> None:
    assert (to_int("0x1b"), to_int("27"), to_int("0x"), to_int(27)) == (27, 27, 0, 27)
    with pytest.raises(ValueError, match="invalid literal"):
        to_int("pending")

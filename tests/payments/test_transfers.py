"""Reading a claimed transfer from a real mainnet getTransaction (jsonParsed) response."""

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kamiyo.chains import SOLANA, SOLANA_DEVNET, AcceptedNetwork
from kamiyo.payments.transfers import (
    References,
    TransferClaim,
    TransferRefused,
    VerifiedTransfer,
    token_account,
    verify_transfer,
)

pytestmark = pytest.mark.anyio

RECORDED = (
    Path(__file__).parents[1]
    / "fixtures"
    / "solana"
    / "solana_getTransaction_jsonParsed.mainnet_usdc_transferChecked.json"
)
OWNER = "3i476kTBBTy7pBGx4CXwJpJ6phuwLQgcwLTdHhU3c7ui"  # the recipient in the recording
SIGNATURE = "5" * 87  # any well-formed signature: the source below answers for every one
REFERENCES = References("a test secret that is long enough to be used")


class Recorded:
    def __init__(self, document: Mapping[str, Any] | None) -> None:
        self.document = document

    async def get_transaction(self, signature: str) -> Mapping[str, Any] | None:
        return self.document


def recorded_with_memo(memo: str) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(json.loads(RECORDED.read_text())["result"])
    for instruction in document["transaction"]["message"]["instructions"]:
        if instruction.get("program") == "spl-memo":
            instruction["parsed"] = memo
    return document


async def check(
    document: Mapping[str, Any] | None, reference: str, network: str = SOLANA, amount: int = 1000
) -> VerifiedTransfer | TransferRefused:
    accepted = AcceptedNetwork(network=network, pay_to=OWNER)
    block_time = int(json.loads(RECORDED.read_text())["result"]["blockTime"])
    return await verify_transfer(
        Recorded(document),
        TransferClaim(SIGNATURE, reference),
        network=accepted,
        references=REFERENCES,
        tool="search_exploits",
        amount=amount,
        now=block_time + 30,
    )


def test_the_recipient_account_is_the_owners_associated_account() -> None:
    assert token_account(OWNER, AcceptedNetwork(network=SOLANA, pay_to=OWNER).usdc) == (
        "H51DXRt3ubThhdhNeDMScfkbC5X4AWzYfHaZS3JKEfPh"
    )


async def test_the_recorded_transfer_with_our_memo_verifies() -> None:
    block_time = int(json.loads(RECORDED.read_text())["result"]["blockTime"])
    reference, memo = REFERENCES.issue("search_exploits", 1000, SOLANA, block_time - 20)
    verdict = await check(recorded_with_memo(memo), reference)
    assert verdict == VerifiedTransfer(
        SIGNATURE, "8fusVwhgo4oS1fGpZKeRaXrJXQk9auKnAgcj9A97wR3t", 1000, block_time
    )


async def test_codes_for_what_is_wrong() -> None:
    block_time = int(json.loads(RECORDED.read_text())["result"]["blockTime"])
    reference, memo = REFERENCES.issue("search_exploits", 1000, SOLANA, block_time - 20)
    document = recorded_with_memo(memo)

    async def code(*args: Any, **kwargs: Any) -> str:
        verdict = await check(*args, **kwargs)
        assert isinstance(verdict, TransferRefused)
        return verdict.code

    assert await code(None, reference) == "TRANSACTION_NOT_FOUND"
    assert await code(document, reference, amount=1001) == "INSUFFICIENT_AMOUNT"
    # Devnet USDC is another mint: the recording's transfer went to the owner's mainnet-USDC
    # account, so it reached the right owner in the wrong token.
    assert await code(document, reference, network=SOLANA_DEVNET) == "WRONG_TOKEN"
    failed = copy.deepcopy(document)
    failed["meta"]["err"] = {"InstructionError": [1, {"Custom": 1}]}
    assert await code(failed, reference) == "INVALID_SIGNATURE"
    assert await code(recorded_with_memo("transfer"), reference) == "PAYMENT_REQUIRED"
    old_reference, old_memo = REFERENCES.issue("search_exploits", 1000, SOLANA, block_time - 400)
    assert await code(recorded_with_memo(old_memo), old_reference) == "EXPIRED_PAYMENT"


def test_a_memo_is_bound_to_its_reference_tool_price_and_network() -> None:
    reference, memo = REFERENCES.issue("search_exploits", 1000, SOLANA, 1_700_000_000)
    assert REFERENCES.matches(memo, reference, "search_exploits", 1000, SOLANA) == 1_700_000_000
    assert REFERENCES.matches(memo, reference + "x", "search_exploits", 1000, SOLANA) is None
    assert REFERENCES.matches(memo, reference, "get_exploit", 1000, SOLANA) is None
    assert REFERENCES.matches(memo, reference, "search_exploits", 2000, SOLANA) is None
    assert REFERENCES.matches(memo, reference, "search_exploits", 1000, SOLANA_DEVNET) is None
    other_server = References("another server's secret, also long enough")
    assert other_server.matches(memo, reference, "search_exploits", 1000, SOLANA) is None

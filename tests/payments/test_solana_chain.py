"""The local Solana chain answers like a real node and settles x402 payments for real."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from solana.exceptions import SolanaRpcException
from solana.rpc.api import Client
from solana.rpc.core import RPCException
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.rpc.responses import (
    GetAccountInfoMaybeJsonParsedResp,
    GetSignaturesForAddressResp,
    GetSignatureStatusesResp,
    GetTransactionResp,
    SendTransactionResp,
    SimulateTransactionResp,
)
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from x402.mechanisms.svm import FacilitatorKeypairSigner

from tests.payments.solana_chain import (
    SOLANA_PY_WARNING_FILTERS,
    USDC,
    RpcCallError,
    SolanaChain,
    exact_svm_requirements,
    sign_exact_svm_payment,
    svm_facilitator,
)
from tests.payments.solana_rpc import (
    COMPUTE_BUDGET_PROGRAM,
    DEVNET_GENESIS_HASH,
    SolanaRpcServer,
    b58encode,
)

pytestmark = SOLANA_PY_WARNING_FILTERS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "solana"
# Keys current nodes add to the API 1.14 recording (see tests/fixtures/solana/README.md).
NEWER_KEYS = frozenset({"stackHeight", "computeUnitsConsumed", "costUnits"})


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _pair_key(item: Any) -> Any:
    """What a list element is, so ours and the recording's can be paired for comparison."""
    if not isinstance(item, dict):
        return type(item).__name__
    if "parsed" in item:
        parsed = item["parsed"]
        kind = parsed.get("type") if isinstance(parsed, dict) else "text"
        return (item.get("program"), kind)
    for marker in ("pubkey", "accountIndex", "index", "signature"):
        if marker in item:
            return marker
    if "programId" in item:
        return "unparsed-instruction"
    return tuple(sorted(item))


def _compare_shapes(
    ours: Any,
    recorded: Any,
    path: str,
    *,
    newer: frozenset[str],
    absent: frozenset[str],
    seen: set[Any],
) -> list[str]:
    """Differences in key sets (and JSON types) at every level; list items paired by kind."""
    if recorded is None:
        return []
    if ours is None:
        # Scalars are nullable (uiAmount, err, …); a missing object or array is not.
        composite = isinstance(recorded, (dict, list))
        return [f"{path}: null where the node has {type(recorded).__name__}"] if composite else []
    if isinstance(recorded, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected an object, got {type(ours).__name__}"]
        problems = []
        missing = set(recorded) - set(ours) - absent
        extra = set(ours) - set(recorded) - newer
        if missing:
            problems.append(f"{path}: missing {sorted(missing)}")
        if extra:
            problems.append(f"{path}: unexpected {sorted(extra)}")
        for key in set(ours) & set(recorded):
            problems += _compare_shapes(
                ours[key], recorded[key], f"{path}.{key}", newer=newer, absent=absent, seen=seen
            )
        return problems
    if isinstance(recorded, list):
        if not isinstance(ours, list):
            return [f"{path}: expected an array, got {type(ours).__name__}"]
        by_kind = {_pair_key(item): item for item in recorded}
        envelope = next(
            (item for item in recorded if isinstance(item, dict) and "parsed" in item), None
        )
        problems = []
        for index, item in enumerate(ours):
            kind = _pair_key(item)
            if kind in by_kind:
                seen.add(kind)
                problems += _compare_shapes(
                    item, by_kind[kind], f"{path}[{index}]", newer=newer, absent=absent, seen=seen
                )
            elif envelope is not None and isinstance(item, dict) and "parsed" in item:
                # A parsed instruction of a type the recording lacks: same envelope keys.
                seen.add("parsed-envelope")
                problems += _compare_shapes(
                    dict.fromkeys(item),
                    dict.fromkeys(envelope),
                    f"{path}[{index}]",
                    newer=newer,
                    absent=absent,
                    seen=seen,
                )
        return problems
    numbers = (int, float)
    same = (
        isinstance(ours, numbers)
        if isinstance(recorded, numbers)
        else (type(ours) is type(recorded))
    )
    return [] if same else [f"{path}: {type(ours).__name__} where the node has {recorded!r}"]


def _assert_same_shape(
    ours: Any,
    recorded: Any,
    *,
    newer: frozenset[str] = frozenset(),
    absent: frozenset[str] = frozenset(),
    must_pair: set[Any],
) -> None:
    seen: set[Any] = set()
    problems = _compare_shapes(ours, recorded, "result", newer=newer, absent=absent, seen=seen)
    assert not problems, "\n".join(problems)
    assert must_pair <= seen, f"never compared: {must_pair - seen}"


def _raw_rpc(chain: SolanaChain, method: str, params: list[Any], *, url: str | None = None) -> str:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    response = httpx2.post(url or chain.rpc_url, json=body, timeout=10)
    response.raise_for_status()
    return response.text


def _statuses(chain: SolanaChain, signatures: list[str]) -> list[Any]:
    result = chain.rpc_result("getSignatureStatuses", [signatures])
    return list(result["value"])


def test_chain_holds_devnet_usdc_and_funded_accounts(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    assert chain.network == "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
    assert chain.rpc_result("getGenesisHash").startswith(chain.network.split(":")[1])
    assert chain.rpc_result("getGenesisHash") == DEVNET_GENESIS_HASH
    raw = _raw_rpc(chain, "getAccountInfo", [str(chain.mint), {"encoding": "jsonParsed"}])
    mint = json.loads(raw)["result"]["value"]
    assert mint["owner"] == "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
    assert mint["data"]["program"] == "spl-token"
    assert mint["data"]["parsed"]["type"] == "mint"
    assert mint["data"]["parsed"]["info"]["decimals"] == 6
    assert mint["data"]["parsed"]["info"]["mintAuthority"] == str(chain.mint_authority.pubkey())
    parsed = GetAccountInfoMaybeJsonParsedResp.from_json(raw)
    assert isinstance(parsed, GetAccountInfoMaybeJsonParsedResp)

    ata = chain.rpc_result("getAccountInfo", [str(chain.pay_to_ata), {"encoding": "jsonParsed"}])
    info = ata["value"]["data"]["parsed"]["info"]
    assert info["owner"] == str(chain.pay_to)
    assert info["mint"] == str(chain.mint)
    assert info["state"] == "initialized"
    assert chain.token_balance(chain.payer.pubkey()) > 0
    assert chain.sol_balance(chain.payer.pubkey()) > 0
    assert chain.sol_balance(chain.fee_payer.pubkey()) > 0
    assert chain.rpc_result("getBlockHeight") < chain.rpc_result("getSlot")
    assert chain.rpc_result("getHealth") == "ok"
    assert chain.rpc_result("getMinimumBalanceForRentExemption", [165]) == 2_039_280


def test_transfer_with_memo_moves_tokens(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=10 * USDC)
    before_merchant = chain.token_balance(chain.pay_to)
    before_sol = chain.sol_balance(payer.pubkey())

    signature = chain.transfer_with_memo(payer, chain.pay_to, 1_250_000, "kamiyo:order-1")

    assert chain.token_balance(payer.pubkey()) == 10 * USDC - 1_250_000
    assert chain.token_balance(chain.pay_to) == before_merchant + 1_250_000
    assert chain.sol_balance(payer.pubkey()) == before_sol - 5_000
    balance = chain.rpc_result("getTokenAccountBalance", [str(chain.ata(payer.pubkey()))])
    assert balance["value"] == {
        "amount": "8750000",
        "decimals": 6,
        "uiAmount": 8.75,
        "uiAmountString": "8.75",
    }
    [status] = _statuses(chain, [signature])
    assert status["err"] is None
    assert status["confirmationStatus"] == "finalized"


def test_get_transaction_json_parsed_matches_recorded_transfer(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    signature = chain.transfer_with_memo(chain.payer, chain.pay_to, 1_000, "transfer")
    recorded = _fixture("solana_getTransaction_jsonParsed.mainnet_usdc_transferChecked.json")

    # Asked as that recording was: no maxSupportedTransactionVersion, so no "version" key.
    raw = _raw_rpc(chain, "getTransaction", [signature, {"encoding": "jsonParsed"}])
    ours = json.loads(raw)
    assert set(ours) == set(recorded) == {"jsonrpc", "result", "id"}
    _assert_same_shape(
        ours["result"],
        recorded["result"],
        newer=NEWER_KEYS,
        # API 1.14 printed addressTableLookups: null for legacy messages; nodes now omit it.
        absent=frozenset({"addressTableLookups"}),
        must_pair={
            ("spl-token", "transferChecked"),
            ("spl-memo", "text"),
            "pubkey",
            "accountIndex",
        },
    )
    result = ours["result"]
    transfer, memo = result["transaction"]["message"]["instructions"]
    assert transfer["parsed"]["info"] == {
        "authority": str(chain.payer.pubkey()),
        "destination": str(chain.pay_to_ata),
        "mint": str(chain.mint),
        "source": str(chain.ata(chain.payer.pubkey())),
        "tokenAmount": {
            "amount": "1000",
            "decimals": 6,
            "uiAmount": 0.001,
            "uiAmountString": "0.001",
        },
    }
    assert memo == {
        "parsed": "transfer",
        "program": "spl-memo",
        "programId": "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr",
        "stackHeight": 1,
    }
    assert 'Program log: Memo (len 8): "transfer"' in result["meta"]["logMessages"]
    keys = [key["pubkey"] for key in result["transaction"]["message"]["accountKeys"]]
    pre, post = (
        {b["accountIndex"]: int(b["uiTokenAmount"]["amount"]) for b in result["meta"][key]}
        for key in ("preTokenBalances", "postTokenBalances")
    )
    merchant = keys.index(str(chain.pay_to_ata))
    assert post[merchant] - pre[merchant] == 1_000
    assert result["transaction"]["signatures"] == [signature]
    parsed = GetTransactionResp.from_json(raw)
    assert isinstance(parsed, GetTransactionResp)
    assert parsed.value is not None

    with_version = _fixture(
        "solana_getTransaction_jsonParsed.mainnet_usdc_transferChecked.with_version"
        ".reconstructed.json"
    )
    versioned = chain.get_transaction(signature)
    assert versioned["version"] == "legacy"
    assert set(versioned) == set(with_version["result"])


def test_v0_transactions_need_max_supported_version(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    signature = chain.transfer_with_memo(chain.payer, chain.pay_to, 2_000, "v0", versioned=True)
    refused = chain.rpc("getTransaction", [signature, {"encoding": "jsonParsed"}])
    assert refused["error"]["code"] == -32015
    assert "maxSupportedTransactionVersion" in refused["error"]["message"]

    docs = _fixture("solana_getTransaction_jsonParsed.docs_example.json")
    ours = chain.get_transaction(signature)
    assert ours["version"] == 0
    assert ours["transaction"]["message"]["addressTableLookups"] == []
    _assert_same_shape(
        ours, docs["result"], must_pair={"pubkey", "accountIndex", "parsed-envelope"}
    )
    assert set(ours["meta"]) == set(docs["result"]["meta"])

    for encoding in ("json", "jsonParsed", "base64"):
        config = {"encoding": encoding, "maxSupportedTransactionVersion": 0}
        raw = _raw_rpc(chain, "getTransaction", [signature, config])
        parsed = GetTransactionResp.from_json(raw)
        assert isinstance(parsed, GetTransactionResp), encoding
        assert parsed.value is not None
        assert parsed.value.slot == ours["slot"]
    as_json = chain.get_transaction(signature, encoding="json")
    assert as_json["meta"]["loadedAddresses"] == {"readonly": [], "writable": []}
    assert as_json["transaction"]["message"]["instructions"][0]["stackHeight"] == 1
    binary = chain.get_transaction(signature, encoding="base64")["transaction"]
    assert str(VersionedTransaction.from_bytes(base64.b64decode(binary[0])).signatures[0]) == (
        signature
    )


def test_signature_statuses_batch(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    first = chain.transfer_with_memo(chain.payer, chain.pay_to, 10, "batch-1")
    second = chain.transfer_with_memo(chain.payer, chain.pay_to, 20, "batch-2")
    unknown = str(Signature.new_unique())

    raw = _raw_rpc(chain, "getSignatureStatuses", [[first, unknown, second]])
    result = json.loads(raw)["result"]
    assert set(result) == {"context", "value"}
    one, missing, two = result["value"]
    assert missing is None
    for status in (one, two):
        assert status == {
            "slot": status["slot"],
            "confirmations": None,
            "err": None,
            "status": {"Ok": None},
            "confirmationStatus": "finalized",
        }
    assert one["slot"] < two["slot"] <= result["context"]["slot"]
    parsed = GetSignatureStatusesResp.from_json(raw)
    assert isinstance(parsed, GetSignatureStatusesResp)
    assert parsed.value[1] is None
    too_many = chain.rpc("getSignatureStatuses", [[unknown] * 257])
    assert too_many["error"]["code"] == -32602


def test_signatures_for_address_carries_memo(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=USDC)
    signature = chain.transfer_with_memo(payer, chain.pay_to, 5, "transfer")
    raw = _raw_rpc(chain, "getSignaturesForAddress", [str(payer.pubkey())])
    [entry] = json.loads(raw)["result"]
    recorded = _fixture("solana_getSignaturesForAddress.mainnet_usdc.json")["result"][0]
    assert set(entry) == set(recorded)
    assert entry["signature"] == signature
    assert entry["memo"] == "[8] transfer"
    assert isinstance(GetSignaturesForAddressResp.from_json(raw), GetSignaturesForAddressResp)


def test_preflight_failure_and_landed_failure(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=100)

    with pytest.raises(RpcCallError) as refused:
        chain.transfer_with_memo(payer, chain.pay_to, 101, "too much")
    error = refused.value.error
    assert error["code"] == -32002
    assert error["message"] == (
        "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1"
    )
    assert error["data"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert "Program log: Error: insufficient funds" in error["data"]["logs"]
    assert chain.sol_balance(payer.pubkey()) == 1_000_000_000

    # Without preflight the signature comes back; the failure lands on chain with its fee.
    signature = chain.transfer_with_memo(payer, chain.pay_to, 101, "too much", skip_preflight=True)
    [status] = _statuses(chain, [signature])
    assert status["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert status["status"] == {"Err": status["err"]}
    assert chain.token_balance(payer.pubkey()) == 100
    assert chain.sol_balance(payer.pubkey()) == 1_000_000_000 - 5_000

    # The node's error parses as solders' preflight failure, as solana-py clients see it.
    tx = chain.transfer_tx(payer, chain.pay_to, 102, None)
    encoded = base64.b64encode(bytes(tx)).decode()
    raw = _raw_rpc(chain, "sendTransaction", [encoded, {"encoding": "base64"}])
    assert isinstance(SendTransactionResp.from_json(raw), SendTransactionPreflightFailureMessage)


def test_x402_facilitator_verifies_and_settles(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=5 * USDC)
    fee_payer = chain.fee_payer.pubkey()
    requirements = exact_svm_requirements(chain, 250_000, memo="kamiyo:call-1")
    payload = sign_exact_svm_payment(chain, requirements, payer)
    facilitator = svm_facilitator(chain)
    merchant_before = chain.token_balance(chain.pay_to)
    fee_payer_before = chain.sol_balance(fee_payer)

    verified = facilitator.verify(payload, requirements)
    assert verified.is_valid, verified
    assert verified.payer == str(payer.pubkey())
    assert chain.token_balance(chain.pay_to) == merchant_before

    settled = facilitator.settle(payload, requirements)
    assert settled.success, settled
    assert settled.network == chain.network
    assert chain.token_balance(payer.pubkey()) == 5 * USDC - 250_000
    assert chain.token_balance(chain.pay_to) == merchant_before + 250_000
    assert chain.sol_balance(payer.pubkey()) == 1_000_000_000

    tx = chain.get_transaction(settled.transaction)
    assert tx["meta"]["err"] is None
    # Two signatures, plus the priority fee: ceil(20,000 CU x 1 micro-lamport).
    assert tx["meta"]["fee"] == 2 * 5_000 + 1
    assert chain.sol_balance(fee_payer) == fee_payer_before - tx["meta"]["fee"]
    message = tx["transaction"]["message"]
    assert message["accountKeys"][0] == {
        "pubkey": str(fee_payer),
        "signer": True,
        "source": "transaction",
        "writable": True,
    }
    limit, price, transfer, memo = message["instructions"]
    for instruction in (limit, price):
        assert set(instruction) == {"accounts", "data", "programId", "stackHeight"}
        assert instruction["programId"] == COMPUTE_BUDGET_PROGRAM
        assert instruction["accounts"] == []
    assert limit["data"] == b58encode(bytes([2]) + (20_000).to_bytes(4, "little"))
    assert price["data"] == b58encode(bytes([3]) + (1).to_bytes(8, "little"))
    assert transfer["parsed"]["type"] == "transferChecked"
    assert transfer["parsed"]["info"]["destination"] == str(chain.pay_to_ata)
    assert transfer["parsed"]["info"]["authority"] == str(payer.pubkey())
    assert transfer["parsed"]["info"]["tokenAmount"]["amount"] == "250000"
    assert memo["parsed"] == "kamiyo:call-1"

    # A replay is refused by the same facilitator and by a fresh one on the other endpoint.
    replay = facilitator.verify(payload, requirements)
    assert replay.invalid_reason == "transaction_simulation_failed"
    assert "AlreadyProcessed" in (replay.invalid_message or "")
    again = facilitator.settle(payload, requirements)
    assert not again.success
    assert again.error_reason == "transaction_simulation_failed"
    fresh = svm_facilitator(chain, chain.backup_rpc_url).settle(payload, requirements)
    assert not fresh.success
    assert chain.token_balance(chain.pay_to) == merchant_before + 250_000


def test_x402_facilitator_refusals(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    facilitator = svm_facilitator(chain)
    requirements = exact_svm_requirements(chain, 1_000)

    broke = sign_exact_svm_payment(chain, requirements, chain.new_wallet(usdc=999))
    refused = facilitator.verify(broke, requirements)
    assert refused.invalid_reason == "transaction_simulation_failed"
    assert "Custom(1)" in (refused.invalid_message or "")

    payload = sign_exact_svm_payment(chain, requirements, chain.new_wallet(usdc=USDC))
    reasons = {
        "amount": facilitator.verify(payload, exact_svm_requirements(chain, 1_001)),
        "memo": facilitator.verify(payload, exact_svm_requirements(chain, 1_000, memo="inv-9")),
        "recipient": facilitator.verify(
            payload, exact_svm_requirements(chain, 1_000, pay_to=chain.fee_payer.pubkey())
        ),
    }
    assert {name: result.invalid_reason for name, result in reasons.items()} == {
        "amount": "invalid_exact_svm_payload_amount_insufficient",
        "memo": "invalid_exact_svm_payload_memo_mismatch",
        "recipient": "invalid_exact_svm_payload_recipient_mismatch",
    }
    assert facilitator.verify(payload, requirements).is_valid

    chain.expire_blockhash()
    stale = facilitator.verify(payload, requirements)
    assert stale.invalid_reason == "transaction_simulation_failed"
    assert "BlockhashNotFound" in (stale.invalid_message or "")


def test_x402_confirmation_ignores_an_onchain_failure(solana_chain: SolanaChain) -> None:
    """Pins x402 2.25: confirm_transaction looks at confirmationStatus before err.

    A transaction that landed but failed therefore counts as confirmed; code that confirms a
    settlement itself must read the status' ``err``. This test fails once x402 checks it.
    """
    chain = solana_chain
    payer = chain.new_wallet(usdc=1)
    signature = chain.transfer_with_memo(payer, chain.pay_to, 2, "fails", skip_preflight=True)
    [status] = _statuses(chain, [signature])
    assert status["err"] == {"InstructionError": [0, {"Custom": 1}]}
    signer = FacilitatorKeypairSigner(chain.fee_payer, rpc_url=chain.rpc_url)
    signer.confirm_transaction(signature, chain.network)


def test_rpc_down_and_backup_endpoint(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    requirements = exact_svm_requirements(chain, 500)
    payload = sign_exact_svm_payment(chain, requirements, chain.new_wallet(usdc=USDC))

    with chain.rpc_down(chain.rpc_url):
        body = {"jsonrpc": "2.0", "id": 1, "method": "getSlot"}
        assert httpx2.post(chain.rpc_url, json=body, timeout=10).status_code == 503
        assert httpx2.get(f"{chain.rpc_url}/health", timeout=10).status_code == 503
        with pytest.raises(SolanaRpcException):
            Client(chain.rpc_url).get_slot()
        down = svm_facilitator(chain).verify(payload, requirements)
        assert down.invalid_reason == "transaction_simulation_failed"
        # The backup serves the same ledger.
        assert svm_facilitator(chain, chain.backup_rpc_url).verify(payload, requirements).is_valid
        signature = chain.transfer_with_memo(
            chain.payer, chain.pay_to, 1, "via backup", url=chain.backup_rpc_url
        )
    assert chain.get_transaction(signature)["meta"]["err"] is None
    assert "<http 503>" in chain.primary.calls

    with chain.rpc_down(mode="rpc_error"):
        for url in (chain.rpc_url, chain.backup_rpc_url):
            assert chain.rpc("getLatestBlockhash", url=url)["error"] == {
                "code": -32005,
                "message": "Node is unhealthy",
                "data": {"numSlotsBehind": None},
            }
        with pytest.raises(RPCException):
            Client(chain.backup_rpc_url).get_latest_blockhash()
    assert chain.rpc_result("getHealth") == "ok"
    assert chain.rpc_result("getHealth", url=chain.backup_rpc_url) == "ok"


def test_clock_makes_a_payment_look_old(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    ten_minutes_ago = int(time.time()) - 600
    with chain.clock_at(ten_minutes_ago):
        old = chain.transfer_with_memo(chain.payer, chain.pay_to, 3, "old")
    new = chain.transfer_with_memo(chain.payer, chain.pay_to, 3, "new")

    old_tx = chain.get_transaction(old)
    assert old_tx["blockTime"] == ten_minutes_ago
    assert chain.rpc_result("getBlockTime", [old_tx["slot"]]) == ten_minutes_ago
    assert abs(chain.get_transaction(new)["blockTime"] - time.time()) < 60
    history = chain.rpc_result("getSignaturesForAddress", [str(chain.payer.pubkey()), {"limit": 2}])
    assert [(h["signature"], h["blockTime"]) for h in history][1] == (old, ten_minutes_ago)


def test_wire_details(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=USDC)
    tx = chain.transfer_tx(payer, chain.pay_to, 7, "base58")
    # base58 is the node's default encoding for sendTransaction.
    assert chain.rpc_result("sendTransaction", [b58encode(bytes(tx))]) == str(tx.signatures[0])
    assert chain.token_balance(payer.pubkey()) == USDC - 7
    # A duplicate is swallowed without preflight, refused with it.
    assert chain.send_transaction(tx, skip_preflight=True) == str(tx.signatures[0])
    with pytest.raises(RpcCallError, match="already been processed"):
        chain.send_transaction(tx)
    assert chain.token_balance(payer.pubkey()) == USDC - 7

    assert chain.rpc("getBlockProduction")["error"] == {
        "code": -32601,
        "message": "Method not found",
    }
    assert chain.rpc_result("getTransaction", [str(Signature.new_unique())]) is None
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
        {"jsonrpc": "2.0", "id": 2, "method": "getBlockHeight"},
    ]
    answers = httpx2.post(chain.rpc_url, json=batch, timeout=10).json()
    assert [answer["id"] for answer in answers] == [1, 2]
    assert answers[0]["result"] > answers[1]["result"]
    garbled = httpx2.post(chain.rpc_url, content=b"{not json", timeout=10).json()
    assert garbled["error"]["code"] == -32700
    blockhash = chain.rpc_result("getLatestBlockhash")["value"]["blockhash"]
    assert chain.rpc_result("isBlockhashValid", [blockhash])["value"] is True
    assert chain.rpc_result("getVersion")["solana-core"]


def test_simulate_transaction_options(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    requirements = exact_svm_requirements(chain, 400)
    payer = chain.new_wallet(usdc=USDC)
    # The client's transaction still lacks the fee payer's signature.
    partial = sign_exact_svm_payment(chain, requirements, payer).payload["transaction"]

    unsigned = chain.rpc(
        "simulateTransaction", [partial, {"encoding": "base64", "sigVerify": True}]
    )
    assert unsigned["error"] == {
        "code": -32003,
        "message": "Transaction signature verification failure",
    }
    both = {"encoding": "base64", "sigVerify": True, "replaceRecentBlockhash": True}
    assert chain.rpc("simulateTransaction", [partial, both])["error"]["code"] == -32602

    config = {
        "encoding": "base64",
        "accounts": {"addresses": [str(chain.pay_to_ata)], "encoding": "jsonParsed"},
        "innerInstructions": True,
    }
    raw = _raw_rpc(chain, "simulateTransaction", [partial, config])
    value = json.loads(raw)["result"]["value"]
    assert value["err"] is None
    assert value["unitsConsumed"] > 0
    assert value["innerInstructions"] == []
    [merchant] = value["accounts"]
    simulated = int(merchant["data"]["parsed"]["info"]["tokenAmount"]["amount"])
    assert simulated == chain.token_balance(chain.pay_to) + 400
    assert isinstance(SimulateTransactionResp.from_json(raw), SimulateTransactionResp)

    chain.expire_blockhash()
    expired = chain.rpc_result("simulateTransaction", [partial, {"encoding": "base64"}])
    assert expired["value"]["err"] == "BlockhashNotFound"
    replaced = chain.rpc_result(
        "simulateTransaction", [partial, {"encoding": "base64", "replaceRecentBlockhash": True}]
    )
    assert replaced["value"]["err"] is None
    assert replaced["value"]["replacementBlockhash"]["blockhash"] == str(
        chain.ledger.latest_blockhash()[0]
    )


def test_more_endpoints_on_the_same_ledger(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    with SolanaRpcServer(chain.ledger, name="solana-rpc-extra") as extra:
        assert chain.rpc_result("getSlot", url=extra.url) == chain.rpc_result("getSlot")
        url = extra.url
    with pytest.raises(httpx2.ConnectError):
        httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "getSlot"}, timeout=5)

"""SolanaRpc against the local chain: reads, failover, cooldown, rate limit, batching, secrets."""

import base64
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client import REGISTRY

from kamiyo.outbound import pool as pool_module
from kamiyo.payments.rpc import (
    MAX_BATCH,
    RpcRequestError,
    RpcTimeoutError,
    RpcUnavailableError,
    SolanaRpc,
)
from tests.payments.solana_chain import USDC, SolanaChain
from tests.payments.solana_rpc import OutageMode, SolanaRpcServer, b58encode

pytestmark = pytest.mark.anyio

LOGGER = "kamiyo.payments.rpc"


def _host(url: str) -> str:
    return httpx2.URL(url).netloc.decode()


def _rpc_errors(label: str) -> float:
    value = REGISTRY.get_sample_value("kamiyo_x402_rpc_errors_total", {"endpoint": label})
    return value or 0.0


def _unknown_signature() -> str:
    return b58encode(os.urandom(64))


def _counts(chain: SolanaChain) -> tuple[int, int]:
    return len(chain.primary.calls), len(chain.backup.calls)


def _since(server: SolanaRpcServer, count: int) -> list[str]:
    return server.calls[count:]


def _mock_node(
    monkeypatch: pytest.MonkeyPatch, result: Callable[[dict[str, Any]], Any]
) -> list[httpx2.Request]:
    """Route the pool's HTTP to an in-memory node answering ``result(request body)``."""
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        body = json.loads(request.content)
        return httpx2.Response(
            200, json={"jsonrpc": "2.0", "id": body["id"], "result": result(body)}
        )

    # Any arguments (the shared SSL context): a mock transport verifies nothing.
    monkeypatch.setattr(httpx2, "AsyncHTTPTransport", lambda **_: httpx2.MockTransport(answer))
    return seen


def _secret_urls(chain: SolanaChain) -> list[str]:
    return [
        f"{chain.rpc_url}/?api-key=SECRET-QUERY",
        f"http://user:SECRET-USERINFO@{_host(chain.backup_rpc_url)}/",
    ]


async def test_reads_a_transaction_back(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=5 * USDC)
    # A v0 transaction: the node refuses it unless maxSupportedTransactionVersion is sent.
    signature = chain.transfer_with_memo(
        payer, chain.pay_to, 1_250_000, "kamiyo:rpc-read", versioned=True
    )
    async with SolanaRpc([chain.rpc_url, chain.backup_rpc_url]) as rpc:
        tx = await rpc.get_transaction(signature)
    assert tx is not None
    assert tx["meta"]["err"] is None
    assert tx["version"] == 0
    assert tx["transaction"]["signatures"][0] == signature
    instructions = tx["transaction"]["message"]["instructions"]
    (transfer,) = [ix for ix in instructions if ix.get("program") == "spl-token"]
    assert transfer["parsed"]["type"] == "transferChecked"
    assert transfer["parsed"]["info"]["tokenAmount"]["amount"] == "1250000"
    assert transfer["parsed"]["info"]["authority"] == str(payer.pubkey())
    memos = [ix["parsed"] for ix in instructions if ix.get("program") == "spl-memo"]
    assert memos == ["kamiyo:rpc-read"]


async def test_unknown_signature_reads_as_none(solana_chain: SolanaChain) -> None:
    async with SolanaRpc([solana_chain.rpc_url]) as rpc:
        assert await rpc.get_transaction(_unknown_signature()) is None
        assert await rpc.signature_status(_unknown_signature()) is None


async def test_round_robin_spreads_calls_over_both_endpoints(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    primary, backup = _counts(chain)
    async with SolanaRpc([chain.rpc_url, chain.backup_rpc_url]) as rpc:
        assert rpc.endpoints == (_host(chain.rpc_url), _host(chain.backup_rpc_url))
        for _ in range(6):
            assert isinstance(await rpc.call("getSlot", []), int)
    assert _since(chain.primary, primary) == ["getSlot"] * 3
    assert _since(chain.backup, backup) == ["getSlot"] * 3


@pytest.mark.parametrize("mode", ["http_503", "rpc_error"])
async def test_primary_down_answers_come_from_the_backup(
    solana_chain: SolanaChain, caplog: pytest.LogCaptureFixture, mode: OutageMode
) -> None:
    chain = solana_chain
    label = _host(chain.rpc_url)
    errors = _rpc_errors(label)
    primary, backup = _counts(chain)
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with SolanaRpc([chain.rpc_url, chain.backup_rpc_url], cooldown_s=60) as rpc:
        with chain.rpc_down(chain.rpc_url, mode=mode):
            for _ in range(4):
                assert isinstance(await rpc.call("getSlot", []), int)
    # One failed attempt, then the primary is skipped for the cooldown.
    assert len(_since(chain.primary, primary)) == 1
    assert _since(chain.backup, backup) == ["getSlot"] * 4
    assert _rpc_errors(label) == errors + 1
    down = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(down) == 1
    assert label in down[0].getMessage()


async def test_primary_comes_back_after_the_cooldown(
    solana_chain: SolanaChain, caplog: pytest.LogCaptureFixture
) -> None:
    chain = solana_chain
    label, backup_label = _host(chain.rpc_url), _host(chain.backup_rpc_url)
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with SolanaRpc([chain.rpc_url, chain.backup_rpc_url], cooldown_s=0.2) as rpc:
        with chain.rpc_down(chain.rpc_url):
            for _ in range(3):
                await rpc.call("getSlot", [])
            assert (await rpc.check_health())[label] is False
        primary, _ = _counts(chain)
        deadline = time.monotonic() + 10
        # No sleep needed: the pool's own rate limit paces the loop.
        while "getSlot" not in _since(chain.primary, primary):
            assert time.monotonic() < deadline, "the primary was never used again"
            await rpc.call("getSlot", [])
        assert _since(chain.primary, primary)[0] == "getHealth"
        assert await rpc.check_health() == {label: True, backup_label: True}
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert [m for m in messages if "is down" in m] == [
        f"Solana RPC endpoint {label} is down (HTTP 503)"
    ]
    assert [m for m in messages if "is back" in m] == [f"Solana RPC endpoint {label} is back"]


@pytest.mark.parametrize("mode", ["http_503", "rpc_error"])
async def test_all_down_raises_unavailable_quickly_without_secrets(
    solana_chain: SolanaChain,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    mode: OutageMode,
) -> None:
    chain = solana_chain
    caplog.set_level(logging.DEBUG)
    waits = recorded_pauses(monkeypatch)
    pool = SolanaRpc(_secret_urls(chain), attempts=3, cooldown_s=60, requests_per_second=1000)
    async with pool as rpc:
        with chain.rpc_down(mode=mode), pytest.raises(RpcUnavailableError) as caught:
            await rpc.call("getSlot", [])
    # Three attempts with backoff between them (the rate limit's waits round to 0), then none.
    assert [wait for wait in waits if wait] == [0.1, 0.2]
    message = str(caught.value)
    assert _host(chain.rpc_url) in message
    assert _host(chain.backup_rpc_url) in message
    assert caught.value.__cause__ is None
    logged = [record.getMessage() for record in caplog.records]
    assert any("is down" in text for text in logged)
    assert not [text for text in [message, *logged] if "SECRET" in text]


async def test_secrets_stay_out_of_every_log(
    solana_chain: SolanaChain, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The server quiets httpx2 (observability.py); here it speaks, so the URLs it logs are seen.
    caplog.set_level(logging.DEBUG, logger="httpx2")
    async with SolanaRpc(_secret_urls(solana_chain)) as rpc:
        for _ in range(2):
            assert isinstance(await rpc.call("getSlot", []), int)
    logged = [record.getMessage() for record in caplog.records]
    # httpx2 logs each request with its URL at INFO: the check sees it, minus the secrets.
    assert any(text.startswith("HTTP Request: POST") for text in logged)
    assert not [text for text in logged if "SECRET" in text]


async def test_the_full_url_and_credentials_still_reach_the_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _mock_node(monkeypatch, lambda body: 7)
    url = "https://user:pw@rpc.example:8899/v2/KEY?api-key=SECRET"
    async with SolanaRpc([url]) as rpc:
        assert rpc.endpoints == ("rpc.example:8899",)
        assert await rpc.call("getSlot", []) == 7
    (request,) = seen
    assert str(request.url) == "https://rpc.example:8899/v2/KEY?api-key=SECRET"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert json.loads(request.content)["method"] == "getSlot"


async def test_reads_ask_for_parsed_confirmed_v0_and_full_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def result(body: dict[str, Any]) -> Any:
        if body["method"] == "getSignatureStatuses":
            return {"context": {"slot": 1}, "value": [None] * len(body["params"][0])}
        return None

    seen = _mock_node(monkeypatch, result)
    signature = _unknown_signature()
    async with SolanaRpc(["https://rpc.example/"]) as rpc:
        assert await rpc.get_transaction(signature) is None
        assert await rpc.signature_status(signature) is None
    assert [json.loads(request.content)["params"] for request in seen] == [
        [
            signature,
            {
                "encoding": "jsonParsed",
                "commitment": "confirmed",
                "maxSupportedTransactionVersion": 0,
            },
        ],
        [[signature], {"searchTransactionHistory": True}],
    ]


async def test_request_errors_are_raised_without_trying_another_endpoint(
    solana_chain: SolanaChain,
) -> None:
    chain = solana_chain
    labels = [_host(chain.rpc_url), _host(chain.backup_rpc_url)]
    errors = [_rpc_errors(label) for label in labels]
    async with SolanaRpc([chain.rpc_url, chain.backup_rpc_url]) as rpc:
        for call in (
            rpc.call("getTransaction", ["not-a-signature"]),
            rpc.get_transaction("not-a-signature"),
        ):
            primary, backup = _counts(chain)
            with pytest.raises(RpcRequestError) as caught:
                await call
            assert caught.value.code == -32602
            calls = _since(chain.primary, primary) + _since(chain.backup, backup)
            assert calls == ["getTransaction"]
        with pytest.raises(RpcRequestError) as unknown:
            await rpc.call("getNothing", [])
        assert unknown.value.code == -32601
        assert await rpc.check_health() == dict.fromkeys(labels, True)
    assert [_rpc_errors(label) for label in labels] == errors


async def test_concurrent_status_reads_share_one_request(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    payer = chain.new_wallet(usdc=5 * USDC)
    landed = [
        chain.transfer_with_memo(payer, chain.pay_to, 1, f"kamiyo:batch-{i}") for i in range(3)
    ]
    unknown = [_unknown_signature() for _ in range(17)]
    results: dict[str, dict[str, Any] | None] = {}
    primary, backup = _counts(chain)
    async with SolanaRpc([chain.rpc_url, chain.backup_rpc_url]) as rpc:

        async def read(signature: str) -> None:
            results[signature] = await rpc.signature_status(signature)

        async with anyio.create_task_group() as tasks:
            for signature in landed + unknown:
                tasks.start_soon(read, signature)
    calls = _since(chain.primary, primary) + _since(chain.backup, backup)
    assert calls == ["getSignatureStatuses"]
    for signature in landed:
        status = results[signature]
        assert status is not None
        assert status["err"] is None
        assert status["confirmationStatus"] in ("confirmed", "finalized")
    assert all(results[signature] is None for signature in unknown)


async def test_status_batches_hold_at_most_256(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    signatures = [_unknown_signature() for _ in range(MAX_BATCH + 44)]
    results: list[dict[str, Any] | None] = []
    primary, backup = _counts(chain)
    async with SolanaRpc([chain.rpc_url, chain.backup_rpc_url]) as rpc:

        async def read(signature: str) -> None:
            results.append(await rpc.signature_status(signature))

        async with anyio.create_task_group() as tasks:
            for signature in signatures:
                tasks.start_soon(read, signature)
    # The node refuses more than 256 signatures, so an oversized batch would have failed.
    calls = _since(chain.primary, primary) + _since(chain.backup, backup)
    assert calls == ["getSignatureStatuses"] * 2
    assert results == [None] * len(signatures)


async def test_a_malformed_signature_fails_alone(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    primary, _ = _counts(chain)
    async with SolanaRpc([chain.rpc_url]) as rpc:
        with pytest.raises(RpcRequestError):
            await rpc.signature_status("not-a-signature")
    assert _since(chain.primary, primary) == []


async def test_closing_the_pool_fails_queued_status_reads(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    primary, _ = _counts(chain)
    failures: list[Exception] = []
    rpc = SolanaRpc([chain.rpc_url], batch_window_s=60)

    async def read() -> None:
        try:
            await rpc.signature_status(_unknown_signature())
        except RpcUnavailableError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        await anyio.wait_all_tasks_blocked()  # the read is queued, its batch not yet sent
        await rpc.aclose()
    assert [str(failure) for failure in failures] == ["the Solana RPC pool was closed"]
    assert _since(chain.primary, primary) == []
    await rpc.aclose()  # closing twice is harmless


def recorded_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pool's waits, recorded (rounded to 0.1 s) instead of slept, so tests read what the
    pool decided rather than timing it."""
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(round(seconds, 1))

    monkeypatch.setattr(pool_module, "pause", record)
    return waits


async def test_rate_limit_spaces_requests_to_one_endpoint(
    solana_chain: SolanaChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = solana_chain
    primary, _ = _counts(chain)
    waits = recorded_pauses(monkeypatch)
    # Held still: the waits are then what the limit decides, not how late a busy loop ran.
    monkeypatch.setattr(pool_module, "clock", lambda: 1_000.0)
    pool = SolanaRpc([chain.rpc_url], requests_per_second=5)
    async with pool as rpc, anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(rpc.call, "getSlot", [])
    assert _since(chain.primary, primary) == ["getSlot"] * 10
    # Ten concurrent calls take slots 0.2 s apart: nine of them wait 0.2, 0.4, ... 1.8 s.
    assert sorted(waits) == [round(0.2 * n, 1) for n in range(1, 10)]


async def test_the_deadline_covers_rate_limit_waits(solana_chain: SolanaChain) -> None:
    chain = solana_chain
    primary, _ = _counts(chain)
    async with SolanaRpc([chain.rpc_url], requests_per_second=0.5, timeout_s=0.3) as rpc:
        await rpc.call("getSlot", [])
        with pytest.raises(RpcTimeoutError):
            await rpc.call("getSlot", [])  # its slot comes 2 s after the first
    assert _since(chain.primary, primary) == ["getSlot"]


@pytest.mark.parametrize(
    ("urls", "options", "problem"),
    [
        ([], {}, "at least one"),
        ("http://127.0.0.1:8899", {}, "at least one"),
        (["ftp://rpc.example/"], {}, "http"),
        (["rpc.example"], {}, "http"),
        (["http://127.0.0.1:8899"], {"requests_per_second": 0}, "positive"),
        (["http://127.0.0.1:8899"], {"attempts": 0}, "positive"),
        (["http://127.0.0.1:8899"], {"cooldown_s": -1}, "negative"),
    ],
)
def test_bad_configuration_is_refused(urls: Any, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SolanaRpc(urls, **options)

"""The Etherscan-format client against the loopback explorer: histories with real attacker
addresses, paging at 1,000, the page cap, rate limits, NOTOK, timeouts, the time budget, and
Blockscout's variant."""

import dataclasses

import pytest
from pydantic import SecretStr

from kamiyo.explorers import History, deadline_in, open_explorers
from tests.explorers.explorer_server import (
    EULER_ATTACK_TX,
    EULER_ATTACKER,
    GENESIS_TIME,
    PARITY_WALLET,
    RONIN_ATTACKER,
    TEST_KEY,
    USDC,
    ExplorerServer,
    Options,
    options_for,
)

pytestmark = pytest.mark.anyio

WALLET = "0x1111111111111111111111111111111111111111"
OTHER = "0x2222222222222222222222222222222222222222"
ETH = 10**18


def _options(server: ExplorerServer, chain: str = "ethereum", **changes: object) -> Options:
    return options_for({chain: server}, **changes)


async def _history(options: Options, address: str = WALLET, chain: str = "ethereum") -> History:
    async with open_explorers(options) as explorers:
        return await explorers.history(address, chain, deadline=deadline_in(10))


async def test_a_wallet_that_received_funds_from_the_ronin_attacker(
    explorer: ExplorerServer,
) -> None:
    funded = explorer.send(1, RONIN_ATTACKER, WALLET, 2 * ETH, block=100)
    explorer.token_transfer(1, USDC, RONIN_ATTACKER, WALLET, 5_000_000, block=101)
    call = explorer.send(1, WALLET, OTHER, 0, block=102)
    explorer.internal(1, call, OTHER, WALLET, ETH // 2)
    explorer.send(1, OTHER, "0x3333333333333333333333333333333333333333", ETH, block=103)

    history = await _history(_options(explorer), WALLET.upper().replace("0X", "0x"))

    assert history.complete
    assert history.address == WALLET
    assert history.chain == "ethereum"
    assert history.provider == explorer.api_url.split("/")[2]
    assert history.transactions_scanned == 3
    from_attacker = [t for t in history.transfers if t.sender == RONIN_ATTACKER]
    assert [(t.kind, t.raw_amount, t.amount, t.symbol) for t in from_attacker] == [
        ("token", 5_000_000, 5.0, "USDC"),
        ("native", 2 * ETH, 2.0, "ETH"),
    ]
    native = next(t for t in history.transfers if t.tx_hash == funded)
    assert (native.recipient, native.block, native.token) == (WALLET, 100, None)
    assert native.time is not None
    assert native.time.timestamp() == GENESIS_TIME + 1200
    internal = next(t for t in history.transfers if t.kind == "internal")
    assert (internal.tx_hash, internal.sender, internal.raw_amount) == (call, OTHER, ETH // 2)
    assert all(r.get("chainid") == "1" and r.get("apikey") == TEST_KEY for r in explorer.requests)
    assert history.calls == explorer.calls() == 4


async def test_only_the_wallets_own_transfers_and_the_token_ones_in_full(
    explorer: ExplorerServer,
) -> None:
    explorer.token_transfer(1, USDC, RONIN_ATTACKER, WALLET, 5_000_000, block=101)
    explorer.send(1, OTHER, RONIN_ATTACKER, ETH, block=102)
    history = await _history(_options(explorer))
    [token] = [t for t in history.transfers if t.kind == "token"]
    assert (token.sender, token.recipient, token.token, token.decimals) == (
        RONIN_ATTACKER,
        WALLET,
        USDC,
        6,
    )
    assert {t.tx_hash for t in history.transfers} == {token.tx_hash}


async def test_open_approvals_keep_the_latest_value_per_token_and_spender(
    explorer: ExplorerServer,
) -> None:
    explorer.approve(1, WALLET, USDC, PARITY_WALLET, 2**256 - 1, block=10)
    explorer.approve(1, WALLET, USDC, OTHER, 1_000, block=11)
    revoked = explorer.approve(1, WALLET, USDC, OTHER, 0, block=12)
    explorer.approve(1, OTHER, USDC, PARITY_WALLET, 5, block=13)  # someone else's

    history = await _history(_options(explorer))

    by_spender = {a.spender: a for a in history.approvals}
    assert set(by_spender) == {PARITY_WALLET, OTHER}
    assert by_spender[PARITY_WALLET].unlimited
    assert by_spender[PARITY_WALLET].block == 10
    assert (by_spender[OTHER].raw_value, by_spender[OTHER].tx_hash) == (0, revoked)
    assert all(a.owner == WALLET and a.token == USDC for a in history.approvals)


async def test_histories_are_read_in_pages_of_1000(explorer: ExplorerServer) -> None:
    for block in range(2_500):
        explorer.send(1, OTHER, WALLET, block, block=block)
    history = await _history(_options(explorer))
    assert history.complete
    assert history.transactions_scanned == 2_500
    assert history.transfers[0].block == 2_499  # newest first
    offsets = {r["offset"] for r in explorer.requests if r.get("action") == "txlist"}
    assert offsets == {"1000"}
    assert 3 <= explorer.calls("txlist") <= 4  # pages 2-4 are asked for together


async def test_the_page_cap_truncates_and_says_so(explorer: ExplorerServer) -> None:
    for block in range(2_500):
        explorer.send(1, OTHER, WALLET, block, block=block)
    history = await _history(_options(explorer, max_pages=2))
    assert history.truncated
    assert not history.complete
    assert history.transactions_scanned == 2_000
    assert min(t.block for t in history.transfers) == 500  # the newest 2,000 were read
    assert any("txlist: stopped at the cap of 2 pages of 1000" in f for f in history.failures)


async def test_a_call_may_read_fewer_pages_and_hears_of_each(explorer: ExplorerServer) -> None:
    for block in range(2_500):
        explorer.send(1, OTHER, WALLET, block, block=block)
    heard: list[int] = []
    async with open_explorers(_options(explorer)) as explorers:
        history = await explorers.history(
            WALLET, "ethereum", deadline=deadline_in(10), max_pages=1, progress=heard.append
        )
        more = await explorers.history(WALLET, "ethereum", deadline=deadline_in(10), max_pages=50)
    assert history.transactions_scanned == 1_000
    assert history.truncated
    assert sorted(heard) == heard
    assert heard[-1] == 1_000  # three empty lists and one page of 1,000
    assert more.complete  # a larger cap than configured is not granted, but 10 suffice here
    with pytest.raises(ValueError, match="max_pages must be at least 1"):
        async with open_explorers(_options(explorer)) as explorers:
            await explorers.history(WALLET, "ethereum", deadline=deadline_in(1), max_pages=0)


async def test_a_provider_that_ignores_page_is_read_once_and_said_so(
    blockscout: ExplorerServer,
) -> None:
    for block in range(1_200):
        blockscout.approve(8453, WALLET, f"0x{block + 1:040x}", OTHER, 1, block=block)
    blockscout.ignore_paging("getLogs")
    history = await _history(_options(blockscout, "base"), chain="base")
    assert len(history.approvals) == 1_000
    assert history.truncated
    assert any("getLogs: 127.0.0.1:" in f and "does not page it" in f for f in history.failures)


async def test_max_rate_limit_reached_is_waited_out(explorer: ExplorerServer) -> None:
    explorer.send(1, RONIN_ATTACKER, WALLET, ETH, block=1)
    explorer.rate_limit_next(3)
    history = await _history(_options(explorer))
    assert history.complete
    assert history.transactions_scanned == 1
    assert history.calls == explorer.calls() == 7  # 4 lists + 3 refused tries


async def test_a_rate_limit_that_does_not_end_fails_that_list(explorer: ExplorerServer) -> None:
    explorer.rate_limit_next(1_000)
    history = await _history(_options(explorer))
    assert history.truncated
    assert len(history.failures) == 4
    assert all("rate limited (NOTOK: Max rate limit reached)" in f for f in history.failures)


async def test_notok_fails_one_list_with_the_reason_and_never_the_key(
    explorer: ExplorerServer,
) -> None:
    explorer.send(1, RONIN_ATTACKER, WALLET, ETH, block=1)
    explorer.refuse("tokentx", f"Error! Invalid key {TEST_KEY} for tokentx")
    history = await _history(_options(explorer))
    assert history.truncated
    assert len(history.transfers) == 1
    [failure] = history.failures
    assert failure.startswith("tokentx on 127.0.0.1:")
    assert "NOTOK: Error! Invalid key" in failure
    assert TEST_KEY not in failure
    assert "[key]" in failure


async def test_a_wrong_key_is_a_failure_not_an_empty_history(explorer: ExplorerServer) -> None:
    explorer.send(1, RONIN_ATTACKER, WALLET, ETH, block=1)
    history = await _history(_options(explorer, etherscan_api_key=SecretStr("wrong")))
    assert history.transfers == ()
    assert len(history.failures) == 4
    assert all("Invalid API Key" in f for f in history.failures)


async def test_a_provider_that_times_out_is_a_failure_within_the_budget(
    explorer: ExplorerServer,
) -> None:
    explorer.send(1, RONIN_ATTACKER, WALLET, ETH, block=1)
    explorer.delay_s = 1.0
    async with open_explorers(_options(explorer, timeout_s=0.2)) as explorers:
        history = await explorers.history(WALLET, "ethereum", deadline=deadline_in(3))
    # Waited out, each request would have answered the transfer: none did, each failure names
    # the bound that cut it.
    assert history.truncated
    assert history.transfers == ()
    assert len(history.failures) == 4
    assert all("took longer than 0.8 s" in f for f in history.failures)


async def test_the_time_budget_keeps_what_was_read(explorer: ExplorerServer) -> None:
    for block in range(1_500):
        explorer.send(1, OTHER, WALLET, 1, block=block)
    explorer.delay_s = 0.3
    async with open_explorers(_options(explorer)) as explorers:
        history = await explorers.history(WALLET, "ethereum", deadline=deadline_in(0.5))
    # The budget ran out (not the pages): what was read before it is kept.
    assert history.truncated
    assert history.transactions_scanned == 1_000
    assert any("the time budget ran out after" in f for f in history.failures)


async def test_blockscout_takes_no_chainid_and_never_sees_the_key(
    blockscout: ExplorerServer,
) -> None:
    blockscout.send(8453, RONIN_ATTACKER, WALLET, ETH, block=7)
    blockscout.approve(8453, WALLET, USDC, PARITY_WALLET, 10, block=8)
    options = _options(blockscout, "base", etherscan_api_key=SecretStr(TEST_KEY))
    history = await _history(options, chain="base")
    assert history.complete
    assert history.chain == "base"
    assert [t.sender for t in history.transfers if t.raw_amount] == [RONIN_ATTACKER]
    assert [a.spender for a in history.approvals] == [PARITY_WALLET]
    assert not any("chainid" in r or "apikey" in r for r in blockscout.requests)


async def test_a_transaction_with_its_internal_and_token_transfers(
    explorer: ExplorerServer,
) -> None:
    explorer.send(1, EULER_ATTACKER, OTHER, ETH, block=50, tx_hash=EULER_ATTACK_TX)
    explorer.internal(1, EULER_ATTACK_TX, OTHER, EULER_ATTACKER, 3 * ETH)
    explorer.ledger(1).receipts[EULER_ATTACK_TX]["logs"].append(
        {
            "address": USDC,
            "topics": [
                "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
                "0x" + OTHER[2:].rjust(64, "0"),
                "0x" + EULER_ATTACKER[2:].rjust(64, "0"),
            ],
            "data": hex(7_000_000),
        }
    )
    async with open_explorers(_options(explorer)) as explorers:
        view = await explorers.transaction(
            EULER_ATTACK_TX.upper().replace("0X", "0x"), "eth", deadline=deadline_in(5)
        )
        missing = await explorers.transaction("0x" + "ab" * 32, "ethereum", deadline=deadline_in(5))
    assert (view.status, view.sender, view.recipient, view.block) == (
        "success",
        EULER_ATTACKER,
        OTHER,
        50,
    )
    assert view.time is not None
    assert view.time.timestamp() == GENESIS_TIME + 600
    assert [(t.kind, t.sender, t.recipient, t.raw_amount) for t in view.transfers] == [
        ("native", EULER_ATTACKER, OTHER, ETH),
        ("internal", OTHER, EULER_ATTACKER, 3 * ETH),
        ("token", OTHER, EULER_ATTACKER, 7_000_000),
    ]
    assert view.transfers[2].token == USDC
    assert view.transfers[2].amount is None
    assert (missing.status, missing.transfers, missing.failures) == ("not_found", (), ())


async def test_blockscout_transactions_go_through_its_json_rpc(blockscout: ExplorerServer) -> None:
    tx = blockscout.send(8453, RONIN_ATTACKER, WALLET, ETH, block=9)
    async with open_explorers(_options(blockscout, "base")) as explorers:
        first = await explorers.transaction(tx, "base", deadline=deadline_in(5))
        again = await explorers.transaction(tx, "base", deadline=deadline_in(5))
    assert (first.calls, again.calls) == (5, 4)
    assert dataclasses.replace(first, calls=0) == dataclasses.replace(again, calls=0)
    assert first.status == "success"
    assert first.sender == RONIN_ATTACKER
    proxy_tries = [r for r in blockscout.requests if r.get("module") == "proxy"]
    assert len(proxy_tries) == 1  # learnt once: the instance has no proxy module


async def test_a_failed_transaction_moved_nothing_but_is_seen(explorer: ExplorerServer) -> None:
    explorer.send(1, WALLET, PARITY_WALLET, ETH, block=3, failed=True)
    history = await _history(_options(explorer))
    [call] = history.transfers
    assert (call.recipient, call.succeeded) == (PARITY_WALLET, False)


@pytest.mark.parametrize(
    ("address", "chain", "says"),
    [
        ("0x123", "ethereum", "not an address on ethereum"),
        (WALLET, "solana", "this is an EVM address"),
        (WALLET, "atlantis", "not a chain name KAMIYO knows"),
    ],
)
async def test_bad_input_is_a_clear_error(
    explorer: ExplorerServer, address: str, chain: str, says: str
) -> None:
    async with open_explorers(_options(explorer)) as explorers:
        with pytest.raises(ValueError, match=says):
            await explorers.history(address, chain, deadline=deadline_in(1))
    assert explorer.requests == []

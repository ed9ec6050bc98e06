"""The Solana client against the LiteSVM JSON-RPC server of the payments tests: real SOL and
USDC transfers between accounts, one sender a labelled attacker of a test dataset."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamiyo.explorers import deadline_in, open_explorers
from kamiyo.explorers import solana as solana_client
from kamiyo.explorers.solana_records import transfers_of
from tests.explorers.explorer_server import Options
from tests.payments.solana_chain import SOL, USDC, SolanaChain, keypair_for, running_solana_chain

pytestmark = pytest.mark.anyio

SOLANA_FIXTURES = Path(__file__).parent.parent / "fixtures" / "solana"


@pytest.fixture(scope="module")
def chain() -> Iterator[SolanaChain]:
    with running_solana_chain() as running:
        yield running


def _options(*urls: str, **changes: object) -> Options:
    return Options(solana_rpc_urls=urls, **changes)  # type: ignore[arg-type]


async def test_a_wallet_that_received_sol_and_usdc_from_an_attacker(chain: SolanaChain) -> None:
    attacker = chain.new_wallet(usdc=50 * USDC, lamports=5 * SOL, label="solana-attacker")
    victim = chain.new_wallet(usdc=1, label="solana-victim")
    stranger = chain.new_wallet(label="solana-stranger")
    sol_tx = chain.send_sol(attacker, victim.pubkey(), SOL // 4)
    usdc_tx = chain.transfer_with_memo(attacker, victim.pubkey(), 7 * USDC, "from the attacker")
    chain.send_sol(stranger, attacker.pubkey(), 1_000)  # not the victim's

    async with open_explorers(_options(chain.rpc_url)) as explorers:
        assert explorers.chains == ("solana",)
        history = await explorers.history(str(victim.pubkey()), "sol", deadline=deadline_in(10))

    assert history.complete
    assert history.transactions_scanned == 2
    assert history.provider == chain.rpc_url.split("/")[2]
    got = [(t.tx_hash, t.kind, t.sender, t.recipient, t.token, t.raw_amount, t.amount)
           for t in history.transfers]  # fmt: skip
    assert got == [
        (usdc_tx, "token", str(attacker.pubkey()), str(victim.pubkey()), str(chain.mint),
         7 * USDC, 7.0),
        (sol_tx, "native", str(attacker.pubkey()), str(victim.pubkey()), None, SOL // 4, 0.25),
    ]  # fmt: skip
    assert all(t.time is not None and t.chain == "solana" for t in history.transfers)


async def test_signatures_are_paged_with_before_and_capped(
    chain: SolanaChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    payer = chain.new_wallet(lamports=2 * SOL, label="solana-pager")
    wallet = keypair_for("solana-paged").pubkey()
    sent = [chain.send_sol(payer, wallet, 1_000 + n) for n in range(5)]
    monkeypatch.setattr(solana_client, "PAGE_SIZE", 2)
    async with open_explorers(_options(chain.rpc_url, max_pages=10)) as explorers:
        whole = await explorers.history(str(wallet), "solana", deadline=deadline_in(10))
    async with open_explorers(_options(chain.rpc_url, max_pages=2)) as explorers:
        capped = await explorers.history(str(wallet), "solana", deadline=deadline_in(10))
    assert [t.tx_hash for t in whole.transfers] == sent[::-1]
    assert whole.complete
    assert [t.tx_hash for t in capped.transfers] == sent[:-5:-1]
    assert capped.truncated
    assert capped.failures == (
        "getSignaturesForAddress: stopped at the cap of 2 pages of 2 for "
        f"{wallet} (the newest were read)",
    )


async def test_an_endpoint_that_is_down_is_stepped_around(chain: SolanaChain) -> None:
    payer = chain.new_wallet(lamports=SOL, label="solana-failover-payer")
    wallet = keypair_for("solana-failover").pubkey()
    tx = chain.send_sol(payer, wallet, 5_000)
    async with open_explorers(_options(chain.rpc_url, chain.backup_rpc_url)) as explorers:
        with chain.rpc_down(chain.rpc_url):
            history = await explorers.history(str(wallet), "solana", deadline=deadline_in(10))
    assert [t.tx_hash for t in history.transfers] == [tx]
    assert history.complete


async def test_every_endpoint_down_is_a_failure_not_an_empty_history(chain: SolanaChain) -> None:
    async with open_explorers(_options(chain.rpc_url, timeout_s=0.5)) as explorers:
        with chain.rpc_down():
            history = await explorers.history(
                str(chain.payer.pubkey()), "solana", deadline=deadline_in(5)
            )
    assert history.truncated
    assert history.transfers == ()
    token_accounts, signatures = history.failures
    assert token_accounts.startswith(f"the token accounts of {chain.payer.pubkey()} could not be")
    assert "failed on every Solana RPC endpoint tried" in signatures
    assert "HTTP 503" in signatures


async def test_one_transaction(chain: SolanaChain) -> None:
    # Its own sender: the tests of a module may run on different workers, in any order.
    attacker = chain.new_wallet(usdc=10 * USDC, lamports=SOL, label="solana-tx-sender")
    target = chain.new_wallet(usdc=1, label="solana-tx-target")
    signature = chain.transfer_with_memo(attacker, target.pubkey(), 2 * USDC, "one tx")
    async with open_explorers(_options(chain.rpc_url)) as explorers:
        view = await explorers.transaction(signature, "solana", deadline=deadline_in(5))
        missing = await explorers.transaction("1" * 64, "solana", deadline=deadline_in(5))
        with pytest.raises(ValueError, match="expected a base58 transaction signature"):
            await explorers.transaction("0x" + "ab" * 32, "solana", deadline=deadline_in(5))
    assert (view.status, view.sender, view.recipient) == (
        "success",
        str(attacker.pubkey()),
        str(target.pubkey()),
    )
    assert [(t.kind, t.raw_amount) for t in view.transfers] == [("token", 2 * USDC)]
    assert missing.status == "not_found"


def test_a_recorded_mainnet_transfer_checked() -> None:
    """The real mainnet USDC transferChecked of the fixtures: owners come from the balances."""
    answer = json.loads(
        (
            SOLANA_FIXTURES / "solana_getTransaction_jsonParsed.mainnet_usdc_transferChecked.json"
        ).read_text()
    )
    tx = answer["result"]
    signature = tx["transaction"]["signatures"][0]
    [moved] = transfers_of("solana", signature, tx, None)
    assert (moved.kind, moved.token, moved.raw_amount, moved.decimals, moved.amount) == (
        "token",
        "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        1000,
        6,
        0.001,
    )
    balances = {b["owner"] for b in tx["meta"]["postTokenBalances"]}
    assert {moved.sender, moved.recipient} <= balances
    assert moved.sender != moved.recipient
    assert transfers_of("solana", signature, tx, moved.recipient) == [moved]
    assert transfers_of("solana", signature, tx, "11111111111111111111111111111112") == []

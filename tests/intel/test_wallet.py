"""The whole wallet screen on the bundled data (both backends), reading histories from a
loopback explorer: real attacker addresses as counterparties, an open approval to an exploited
contract, a clean wallet, and wallets that cannot be screened."""

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.explorers import Explorers, open_explorers
from kamiyo.intel import AddressScreenQuery, Scope, Verdict, screen_wallet
from kamiyo.intel.wallet import chains_to_read
from tests.explorers.explorer_server import (
    GENESIS_TIME,
    PARITY_WALLET,
    RONIN_ATTACKER,
    TEST_KEY,
    USDC,
    ExplorerServer,
    Options,
)

pytestmark = pytest.mark.anyio

WALLET = "0x7a11e70000000000000000000000000000000001"
OTHER = "0x7a11e70000000000000000000000000000000002"
ETH = 10**18
# A block mined after the Ronin incident (2022-03-23) on the test explorer's clock.
AFTER_RONIN = (1_660_000_000 - GENESIS_TIME) // 12
BEFORE_RONIN = 100


@pytest.fixture
def chain() -> Iterator[ExplorerServer]:
    with ExplorerServer("etherscan", api_key=TEST_KEY) as server:
        yield server


async def _explorers(server: ExplorerServer, **changes: object) -> Explorers:
    values: dict[str, object] = {
        "urls": {"ethereum": server.api_url},
        "etherscan_api_key": SecretStr(TEST_KEY),
    }
    values.update(changes)
    return open_explorers(Options(**values))  # type: ignore[arg-type]


@pytest.fixture
async def explorers(chain: ExplorerServer) -> AsyncIterator[Explorers]:
    async with await _explorers(chain) as opened:
        yield opened


async def _screen(
    session: AsyncSession, reader: Explorers | None, address: str = WALLET, **query: str
) -> dict[str, object]:
    answer = await screen_wallet(
        session, AddressScreenQuery(wallet_address=address, **query), reader=reader, budget_s=5
    )
    return answer.model_dump(mode="json")


async def _ronin_id(session: AsyncSession, explorers: Explorers) -> str:
    direct = await _screen(session, explorers, RONIN_ATTACKER)
    matches = direct["direct_matches"]
    assert isinstance(matches, list)
    return str(next(m["incident_id"] for m in matches if m["kind"] == "incident"))


async def test_funds_from_the_ronin_attacker_are_flagged_with_the_transaction(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    funded = chain.send(1, RONIN_ATTACKER, WALLET, 2 * ETH, block=AFTER_RONIN)
    chain.token_transfer(1, USDC, RONIN_ATTACKER, WALLET, 5_000_000, block=AFTER_RONIN + 1)
    chain.send(1, WALLET, OTHER, ETH, block=AFTER_RONIN + 2)

    answer = await _screen(session, explorers)

    assert answer["verdict"] == Verdict.WARN
    counterparties = answer["counterparties"]
    assert isinstance(counterparties, list)
    ronin = await _ronin_id(session, explorers)
    first = next(c for c in counterparties if c["tx_hash"] == funded)
    assert first["address"] == RONIN_ATTACKER
    assert first["incident_id"] == ronin
    assert (first["role"], first["stance"], first["direction"]) == ("attacker", "hostile", "in")
    assert (first["amount"], first["token"], first["timing"]) == ("2", None, "after")
    assert {c["token"] for c in counterparties} == {None, "USDC"}
    coverage = answer["coverage"]
    assert isinstance(coverage, dict)
    assert coverage["history_read"] is True
    assert coverage["chains"] == ["ethereum"]
    assert coverage["transactions_scanned"] == 3
    assert coverage["counterparties_found"] == 2
    assert "WARN" in str(answer["summary"])


async def test_timing_says_whether_the_interaction_came_before_the_incident(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    chain.send(1, WALLET, RONIN_ATTACKER, ETH, block=BEFORE_RONIN)
    answer = await _screen(session, explorers)
    counterparties = answer["counterparties"]
    assert isinstance(counterparties, list)
    assert [(c["direction"], c["timing"]) for c in counterparties] == [("out", "before")]


async def test_an_open_approval_to_an_exploited_contract_is_to_be_revoked(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    chain.token_transfer(1, USDC, OTHER, WALLET, 10_000_000, block=50)
    chain.approve(1, WALLET, USDC, PARITY_WALLET, 2**256 - 1, block=60)
    # An allowance set and then revoked is no longer open.
    chain.approve(1, WALLET, USDC, OTHER, 5, block=61)
    chain.approve(1, WALLET, USDC, OTHER, 0, block=62)

    answer = await _screen(session, explorers)

    assert answer["verdict"] == Verdict.WARN, answer
    approvals = answer["approvals"]
    assert isinstance(approvals, list)
    assert len(approvals) == 1
    (approval,) = approvals
    assert approval["spender"] == PARITY_WALLET
    assert (approval["token"], approval["token_symbol"]) == (USDC, "USDC")
    assert (approval["value"], approval["advice"]) == ("unlimited", "revoke")
    assert "Parity" in approval["protocol"]


async def test_a_clean_wallet_read_in_full_is_allowed(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    chain.send(1, OTHER, WALLET, ETH, block=10)
    chain.send(1, WALLET, OTHER, ETH // 2, block=11)
    answer = await _screen(session, explorers)
    assert answer["verdict"] == Verdict.ALLOW
    assert answer["counterparties"] == []
    assert answer["approvals"] == []
    assert str(answer["summary"]).startswith("ALLOW")


async def test_the_ronin_attacker_itself_is_blocked_on_any_evm_chain(
    session: AsyncSession, explorers: Explorers
) -> None:
    for asked in ("ethereum", "bsc", None):
        query = {"chain": asked} if asked else {}
        answer = await _screen(session, explorers, RONIN_ATTACKER, **query)
        assert answer["verdict"] == Verdict.BLOCK, asked


async def test_without_an_explorer_the_wallet_is_unknown_not_allowed(
    session: AsyncSession,
) -> None:
    answer = await _screen(session, None)
    assert answer["verdict"] == Verdict.UNKNOWN
    coverage = answer["coverage"]
    assert isinstance(coverage, dict)
    assert coverage["history_read"] is False


async def test_a_chain_with_no_explorer_is_unknown_and_says_why(
    session: AsyncSession, explorers: Explorers
) -> None:
    answer = await _screen(session, explorers, chain="arbitrum")
    assert answer["verdict"] == Verdict.UNKNOWN
    coverage = answer["coverage"]
    assert isinstance(coverage, dict)
    assert [f["error"] for f in coverage["failures"]] == [
        "no explorer is configured for arbitrum (configured: ethereum)"
    ]


async def test_an_explorer_that_does_not_answer_leaves_the_wallet_unknown(
    session: AsyncSession, chain: ExplorerServer
) -> None:
    chain.refuse("txlist", "Invalid API Key")
    chain.refuse("txlistinternal", "Invalid API Key")
    chain.refuse("tokentx", "Invalid API Key")
    chain.refuse("getLogs", "Invalid API Key")
    async with await _explorers(chain) as reader:
        answer = await _screen(session, reader)
    assert answer["verdict"] == Verdict.UNKNOWN
    coverage = answer["coverage"]
    assert isinstance(coverage, dict)
    assert coverage["history_read"] is False
    assert coverage["failures"]


def test_an_evm_address_is_read_on_every_evm_chain_configured() -> None:
    class Reader:
        chains = ("base", "ethereum", "solana")

        async def history(self, address: str, chain: str, *, deadline: float) -> object:
            raise AssertionError("not read here")

    assert chains_to_read(WALLET, None, Reader())[0] == ["base", "ethereum"]  # type: ignore[arg-type]


async def test_an_enterprise_screen_follows_the_top_counterparties_one_hop_further(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    chain.send(1, RONIN_ATTACKER, OTHER, 50 * ETH, block=AFTER_RONIN)
    chain.send(1, OTHER, WALLET, 40 * ETH, block=AFTER_RONIN + 1)

    plain = await _screen(session, explorers)
    assert plain["verdict"] == Verdict.ALLOW  # one hop: OTHER is listed nowhere

    query = AddressScreenQuery(wallet_address=WALLET)
    deep = await screen_wallet(session, query, Scope(detailed=True), explorers, budget_s=5)
    assert deep.verdict is Verdict.WARN
    [far] = deep.counterparties
    assert (far.address, far.hop, far.via, far.direction) == (RONIN_ATTACKER, 2, OTHER, "in")


async def test_a_history_past_the_tiers_share_is_partial_never_clean(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    for block in range(3_200):
        chain.send(1, OTHER, WALLET, 1, block=block + 1)
    capped = await _screen(session, explorers)
    assert capped["verdict"] == Verdict.UNKNOWN
    coverage = capped["coverage"]
    assert isinstance(coverage, dict)
    assert (coverage["truncated"], coverage["transactions_scanned"]) == (True, 3_000)
    assert "partial" in str(capped["summary"])
    query = AddressScreenQuery(wallet_address=WALLET)
    whole = await screen_wallet(session, query, Scope(detailed=True), explorers, budget_s=10)
    assert whole.verdict is Verdict.ALLOW
    assert whole.coverage.transactions_scanned == 3_200


async def test_a_long_list_continues_with_a_cursor_from_the_kept_history(
    session: AsyncSession, chain: ExplorerServer
) -> None:
    for n in range(60):
        chain.send(1, RONIN_ATTACKER, WALLET, ETH + n, block=AFTER_RONIN + n)
    async with await _explorers(chain, cache_ttl_s=300) as reader:
        first = await _screen(session, reader)
        calls = len(chain.requests)
        rest = await _screen(session, reader, cursor="50")
    assert len(chain.requests) == calls  # the second page read nothing again
    first_page, second_page = first["counterparties"], rest["counterparties"]
    assert isinstance(first_page, list)
    assert isinstance(second_page, list)
    assert (len(first_page), first["next_cursor"]) == (50, 50)
    assert "cursor=50" in str(first["summary"])
    assert (len(second_page), rest["next_cursor"]) == (10, None)
    assert {c["tx_hash"] for c in first_page}.isdisjoint(c["tx_hash"] for c in second_page)

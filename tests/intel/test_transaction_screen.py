"""Screening one transaction on the bundled data (both backends), read from a loopback
explorer: an attack transaction of a known incident, a payment to a real attacker, a call to an
exploited contract, a clean transfer, and transactions that cannot be read."""

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.explorers import Explorers, open_explorers
from kamiyo.intel import TransactionScreenQuery, Verdict, screen_transaction
from tests.explorers.explorer_server import (
    EULER_ATTACK_TX,
    PARITY_WALLET,
    RONIN_ATTACKER,
    TEST_KEY,
    ExplorerServer,
    Options,
)

pytestmark = pytest.mark.anyio

WALLET = "0x7a11e70000000000000000000000000000000001"
OTHER = "0x7a11e70000000000000000000000000000000002"
ETH = 10**18


@pytest.fixture
def chain() -> Iterator[ExplorerServer]:
    with ExplorerServer("etherscan", api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
async def explorers(chain: ExplorerServer) -> AsyncIterator[Explorers]:
    urls = {"ethereum": chain.api_url}
    options = Options(urls=urls, etherscan_api_key=SecretStr(TEST_KEY))
    async with open_explorers(options) as opened:
        yield opened


async def _screen(
    session: AsyncSession, reader: Explorers | None, tx_hash: str, **query: str
) -> dict[str, object]:
    answer = await screen_transaction(
        session, TransactionScreenQuery(tx_hash=tx_hash, **query), reader=reader, budget_s=5
    )
    return answer.model_dump(mode="json")


async def test_an_attack_transaction_is_blocked_from_the_incident_data_alone(
    session: AsyncSession,
) -> None:
    answer = await _screen(session, None, EULER_ATTACK_TX)
    assert answer["verdict"] == Verdict.BLOCK
    attack_of = answer["attack_of"]
    assert isinstance(attack_of, list)
    assert [a["protocol"] for a in attack_of] == ["Euler Finance"]
    assert str(answer["summary"]).startswith("BLOCK: ")
    coverage = answer["coverage"]
    assert isinstance(coverage, dict)
    assert coverage["transaction_read"] is False


async def test_a_payment_to_the_ronin_attacker_is_blocked_with_the_party(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    tx = chain.send(1, WALLET, RONIN_ATTACKER, ETH, block=10)
    answer = await _screen(session, explorers, tx)
    assert answer["verdict"] == Verdict.BLOCK
    parties = answer["parties"]
    assert isinstance(parties, list)
    # The Ronin attacker is on the OFAC list too: the sanction comes first.
    assert [(p["address"], p["side"], p["role"], bool(p["sanction"])) for p in parties] == [
        (RONIN_ATTACKER, "recipient", None, True),
        (RONIN_ATTACKER, "recipient", "attacker", False),
    ]
    assert RONIN_ATTACKER in str(answer["summary"])


async def test_value_through_an_exploited_contract_warns(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    tx = chain.send(1, WALLET, OTHER, 0, block=10)
    chain.internal(1, tx, PARITY_WALLET, WALLET, ETH)
    answer = await _screen(session, explorers, tx)
    assert answer["verdict"] == Verdict.WARN
    parties = answer["parties"]
    assert isinstance(parties, list)
    assert [(p["address"], p["side"], p["stance"]) for p in parties] == [
        (PARITY_WALLET, "paid_by", "exposure")
    ]


async def test_a_clean_transfer_is_allowed(
    session: AsyncSession, chain: ExplorerServer, explorers: Explorers
) -> None:
    tx = chain.send(1, WALLET, OTHER, ETH, block=10)
    answer = await _screen(session, explorers, tx, chain="ethereum")
    assert answer["verdict"] == Verdict.ALLOW
    coverage = answer["coverage"]
    assert isinstance(coverage, dict)
    assert (coverage["transaction_read"], coverage["status"], coverage["transfers"]) == (
        True,
        "success",
        1,
    )


async def test_an_unknown_or_unreadable_transaction_is_unknown(
    session: AsyncSession, explorers: Explorers
) -> None:
    missing = "0x" + "ab" * 32
    answer = await _screen(session, explorers, missing)
    assert answer["verdict"] == Verdict.UNKNOWN
    elsewhere = await _screen(session, explorers, missing, chain="arbitrum")
    assert elsewhere["verdict"] == Verdict.UNKNOWN
    coverage = elsewhere["coverage"]
    assert isinstance(coverage, dict)
    assert [f["error"] for f in coverage["failures"]] == ["no explorer is configured for arbitrum"]

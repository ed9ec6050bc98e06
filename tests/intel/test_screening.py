"""Screening an address on the bundled data and the packaged OFAC list, on both backends."""

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.intel.scope import Scope
from kamiyo.intel.screening import (
    WEIGHTS,
    Finding,
    assemble,
    judge,
    screen_address,
)
from kamiyo.intel.screening_models import (
    AddressScreen,
    AddressScreenQuery,
    Counterparty,
    Coverage,
    Stance,
    Verdict,
)
from kamiyo.intel.vocabulary import AddressRole

pytestmark = pytest.mark.anyio

# On the ETH list of the OFAC snapshot and the attacker of DeFiHackLabs' Ronin entry.
RONIN_ATTACKER = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"
# The Euler Finance attacker the notable-incidents table gives (the sender of the attack tx).
EULER_ATTACKER = "0x5f259d0b76665c337c6104145894f4d1d2758b8c"
# A Tornado Cash contract, on the 2024-09-27 list (delisted since), as the list writes it.
TORNADO = "0xd90e2f925DA726b50C4Ed8D0Fb90Ad053324F31b"
XBT_SANCTIONED = "123WBUDmSJv4GctdVEz6Qq6z8nXSKrJ4KX"  # first line of the XBT list
NOBODY = "0x" + "5a" * 20


async def screen(session: AsyncSession, address: str, chain: str | None = None) -> AddressScreen:
    return await screen_address(session, AddressScreenQuery(wallet_address=address, chain=chain))


@pytest.mark.parametrize("chain", ["bsc", "ethereum", "base", None])
async def test_the_ronin_attacker_is_blocked_whatever_evm_chain_is_asked(
    session: AsyncSession, chain: str | None
) -> None:
    found = await screen(session, RONIN_ATTACKER, chain)
    assert found.verdict is Verdict.BLOCK
    assert (found.score, found.level) == (100, "critical")
    assert found.chain == chain
    incidents = [m for m in found.direct_matches if m.kind == "incident"]
    ronin = next(m for m in incidents if m.incident_id == "20220329_ronin-network")
    assert (ronin.role, ronin.stance, ronin.chain) == (
        AddressRole.ATTACKER,
        Stance.HOSTILE,
        "ethereum",
    )
    assert "carried out the attack" in ronin.meaning
    # Sanctions come first: the Ronin attacker is on OFAC's ETH list too.
    sanction = found.direct_matches[0]
    assert sanction.kind == "sanction"
    assert (sanction.list_name, sanction.list_date, sanction.assets) == (
        "ofac_sdn",
        dt.date(2024, 9, 27),
        ["ETH"],
    )
    assert "seen on ethereum" in found.summary
    assert found.summary.startswith("BLOCK: ")


async def test_the_euler_attacker_is_listed_as_attacker(session: AsyncSession) -> None:
    found = await screen(session, EULER_ATTACKER.upper().replace("0X", "0x"))  # no checksum
    assert found.address == EULER_ATTACKER
    assert found.verdict is Verdict.BLOCK
    assert (found.score, found.level) == (WEIGHTS[Finding.HOSTILE].points, "critical")
    [match] = found.direct_matches
    assert match.kind == "incident"
    assert (match.incident_id, match.protocol, match.role) == (
        "20230313_eulerfinance",
        "Euler Finance",
        AddressRole.ATTACKER,
    )
    assert "attacker of Euler Finance on 2023-03-13" in found.summary


@pytest.mark.parametrize(("address", "asset"), [(TORNADO, "ETH"), (XBT_SANCTIONED, "XBT")])
async def test_a_sanctioned_address_is_blocked_with_the_lists_date_and_caveat(
    session: AsyncSession, address: str, asset: str
) -> None:
    found = await screen(session, address)
    assert found.verdict is Verdict.BLOCK
    assert found.score == 100
    [sanction] = found.direct_matches
    assert sanction.kind == "sanction"
    assert asset in sanction.assets
    assert sanction.origin == "bundle"
    assert "2025-03-21" in sanction.caveat
    assert "as of 2024-09-27" in found.summary
    assert "may be out of date" in found.summary


@pytest.mark.parametrize(
    ("address", "chain", "incident_id"),
    [
        ("yUJw9a2PyoqKkH47i4yEGf4WXomSHMiK7Lp29Xs2NqM", "solana", "20221011_mango-markets"),
        ("TPFUjxQzG88Vwynrpj2W61ZAkQ9W2QYgAQ", "tron", "20230912_coinex"),
        ("bc1qt64756h9aylujm9tpk826zndegpxtngmr6eqad", None, "20240604_lykke"),
    ],
)
async def test_non_evm_attackers_are_blocked_on_their_chain(
    session: AsyncSession, address: str, chain: str | None, incident_id: str
) -> None:
    found = await screen(session, address, chain)
    assert found.verdict is Verdict.BLOCK
    assert [m.incident_id for m in found.direct_matches if m.kind == "incident"] == [incident_id]


async def test_a_clean_address_is_unknown_and_says_why(session: AsyncSession) -> None:
    found = await screen(session, NOBODY, "ethereum")
    assert found.verdict is Verdict.UNKNOWN
    assert (found.score, found.level) == (0, None)
    assert (found.direct_matches, found.counterparties, found.approvals) == ([], [], [])
    assert found.coverage.history_read is False
    [checked] = found.coverage.sanctions_lists
    assert (checked.list_name, checked.entries) == ("ofac_sdn", 611)
    assert "history was not read" in found.summary
    assert "not a clean bill" in found.summary
    assert "2024-09-27" in found.summary


async def test_a_victim_is_no_threat_but_not_cleared(session: AsyncSession) -> None:
    found = await screen(session, "0xaa119f7442ecc28b9a8f236707ada8362cff24ff")
    assert found.verdict is Verdict.UNKNOWN
    assert found.direct_matches[0].kind == "incident"
    assert found.direct_matches[0].stance is Stance.VICTIM
    assert (found.score, found.level) == (WEIGHTS[Finding.VICTIM].points, "low")


async def test_the_free_tier_delay_hides_recent_incidents(session: AsyncSession) -> None:
    query = AddressScreenQuery(wallet_address="0x2419432344b0b892e592b2601b98eae702ba360e")
    now = await screen_address(session, query)
    assert now.direct_matches[0].kind == "incident"  # Allbridge CCTP, 2026-08-19
    delayed = await screen_address(session, query, Scope(hide_after=dt.date(2026, 1, 1)))
    assert delayed.direct_matches == []


@pytest.mark.parametrize(
    ("address", "chain", "message"),
    [
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", None, "fails its EIP-55 checksum"),
        ("0x123", None, "not an address: expected 0x followed by 40 hex digits"),
        ("0x" + "g" * 40, "ethereum", "not an address"),
        (NOBODY, "solana", "this is an EVM address, and solana uses Solana addresses"),
        (NOBODY, "cosmos", "does not read Cosmos Hub addresses yet"),
        (NOBODY, "planet-x", "not a chain name KAMIYO knows"),
        ("1" * 31, "solana", "not an address: expected"),  # 31 zero bytes: no Solana key
    ],
)
def test_bad_addresses_and_chains_are_refused_by_name(
    address: str, chain: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        AddressScreenQuery(wallet_address=address, chain=chain)


def test_a_right_checksum_and_a_solana_address_are_taken() -> None:
    assert AddressScreenQuery(wallet_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    solana = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    assert AddressScreenQuery(wallet_address=solana, chain="sol").chain == "solana"


def coverage(*, read: bool, truncated: bool = False) -> Coverage:
    return Coverage(
        history_read=read,
        chains=["ethereum"] if read else [],
        providers=["blockscout"] if read else [],
        transactions_scanned=120 if read else 0,
        truncated=truncated,
        time_budget_s=20.0 if read else None,
        failures=[],
        sanctions_lists=[],
    )


@pytest.mark.parametrize(
    ("found", "read", "truncated", "verdict"),
    [
        ([], False, False, Verdict.UNKNOWN),
        ([Finding.EXPOSED], False, False, Verdict.UNKNOWN),  # no history: never warn or allow
        ([Finding.HOSTILE], False, False, Verdict.BLOCK),
        ([], True, False, Verdict.ALLOW),
        ([Finding.VICTIM], True, False, Verdict.ALLOW),
        ([], True, True, Verdict.UNKNOWN),  # a partial scan is never clean
        ([Finding.OPEN_APPROVAL], True, True, Verdict.WARN),
        ([Finding.COUNTERPARTY_EXPOSED, Finding.SANCTIONED], True, False, Verdict.BLOCK),
    ],
)
def test_the_verdict_follows_the_findings_and_what_was_read(
    found: list[Finding], read: bool, truncated: bool, verdict: Verdict
) -> None:
    given, score, level = judge(found, coverage(read=read, truncated=truncated))
    assert given is verdict
    assert score == max((WEIGHTS[f].points for f in found), default=0)
    assert (level is None) == (not found and verdict is Verdict.UNKNOWN)


def test_every_finding_has_a_weight_with_a_reason() -> None:
    assert set(WEIGHTS) == set(Finding)
    for finding, weight in WEIGHTS.items():
        assert 0 < weight.points <= 100, finding
        assert weight.reason.endswith("."), finding


def test_a_counterparty_read_from_history_makes_a_warning() -> None:
    query = AddressScreenQuery(wallet_address=NOBODY, chain="ethereum")
    party = Counterparty(
        address=RONIN_ATTACKER,
        chain="ethereum",
        incident_id="20220329_ronin-network",
        protocol="Ronin Network",
        role=AddressRole.ATTACKER,
        stance=Stance.HOSTILE,
        direction="in",
        tx_hash="0x" + "ab" * 32,
        date=dt.datetime(2022, 4, 1, tzinfo=dt.UTC),
        amount="1.5",
        token="ETH",
        timing="after",
    )
    found = assemble(query, [], coverage(read=True), counterparties=[party])
    assert found.verdict is Verdict.WARN
    assert found.score == WEIGHTS[Finding.COUNTERPARTY_HOSTILE].points
    assert found.level == "high"
    assert found.summary.startswith("WARN: ")
    clean = assemble(query, [], coverage(read=True))
    assert clean.verdict is Verdict.ALLOW
    assert "120 transactions on ethereum" in clean.summary


def test_the_documented_weights_are_the_code_s() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "screening.md").read_text()
    rows = {
        line.split("|")[1].split("`")[1]: [cell.strip() for cell in line.split("|")[2:4]]
        for line in doc.splitlines()
        if line.startswith("| `") and line.split("|")[2].strip().isdigit()  # the weights table
    }
    assert rows == {
        finding.value: [str(w.points), w.verdict.value if w.verdict else "—"]
        for finding, w in WEIGHTS.items()
    }

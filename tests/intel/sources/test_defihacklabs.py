"""The CSV reader: the offline build's DeFiHackLabs reports."""

import datetime as dt
from pathlib import Path

import pytest

from kamiyo.intel.sources import defihacklabs
from kamiyo.intel.vocabulary import AddressRole

DATA = Path(__file__).parents[3] / "data" / "defihacklabs"
HEADER = (
    "incident_id,date,protocol,chains,loss_usd,loss_usd_basis,loss_text,loss_text_source,"
    "attack_type,poc_path,attack_txs,reference_urls,listed_in,notes\n"
)
ADDRESS_HEADER = "incident_id,role,chain,address,source,label_in_poc\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / defihacklabs.INCIDENTS_FILE).write_text(
        HEADER + "20240105_example,2024-01-05,Example Swap,ethereum bsc,1500000,usd,~$1.5M,readme,"
        "Reentrancy,src/test/2024-01/Example_exp.sol src/test/2024-01/Example2_exp.sol,"
        "0xAAAA 0xaaaa 0xbbbb,https://x.com/peckshield/status/1 https://x.com/peckshield/status/1,"
        "past/2024/README.md,\n"
        "202401_orphan,2024-01,Orphan,,,,~52 BNB,poc_header,,src/test/2024-01/Orphan_exp.sol,,,,"
        "poc_not_in_readme\n"
        "20240102_unproven,2024-01-02,Unproven,bsc,,,,,Logic flaw,,,,past/2024/README.md,\n",
        encoding="utf-8",
    )
    (tmp_path / defihacklabs.ADDRESSES_FILE).write_text(
        ADDRESS_HEADER
        + "20240105_example,attacker,ethereum bsc,0xABCDEFabcdefABCDEFabcdefABCDEFabcdefABCD,"
        "header_comment,Attacker\n"
        "20240105_example,victim,,0x1111111111111111111111111111111111111111,constant,VICTIM\n",
        encoding="utf-8",
    )
    return tmp_path


def test_reads_incidents_with_their_facts(folder: Path) -> None:
    example, _, _ = defihacklabs.read_reports(folder)
    assert example.source == "defihacklabs"
    assert example.source_id == "20240105_example"
    assert example.url == (
        f"{defihacklabs.REPOSITORY}/blob/{defihacklabs.COMMIT}/past/2024/README.md"
    )
    assert example.date == dt.date(2024, 1, 5)
    assert example.date_precision == "day"
    assert example.protocol == "Example Swap"
    assert example.chains == ["ethereum", "bsc"]
    assert example.loss_usd == 1_500_000
    assert example.loss_usd_basis == "usd"
    assert example.loss_text == "~$1.5M"
    assert example.attack_type_raw == "Reentrancy"
    assert example.confirmed is True
    # Transaction hashes are lower-cased and de-duplicated; they sit on the first chain.
    assert [(t.chain, t.hash) for t in example.transactions] == [
        ("ethereum", "0xaaaa"),
        ("ethereum", "0xbbbb"),
    ]
    # Duplicate links collapse; each PoC file becomes a link pinned to the commit.
    assert example.references == [
        "https://x.com/peckshield/status/1",
        f"{defihacklabs.REPOSITORY}/blob/{defihacklabs.COMMIT}/src/test/2024-01/Example_exp.sol",
        f"{defihacklabs.REPOSITORY}/blob/{defihacklabs.COMMIT}/src/test/2024-01/Example2_exp.sol",
    ]


def test_an_address_on_two_chains_is_listed_once_per_chain(folder: Path) -> None:
    example, _, _ = defihacklabs.read_reports(folder)
    attackers = [a for a in example.addresses if a.role is AddressRole.ATTACKER]
    assert [(a.chain, a.address, a.label) for a in attackers] == [
        ("ethereum", "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd", "Attacker"),
        ("bsc", "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd", "Attacker"),
    ]
    victim = next(a for a in example.addresses if a.role is AddressRole.VICTIM)
    assert victim.chain is None
    assert victim.label == "VICTIM"


def test_month_only_dates_token_losses_and_orphan_pocs(folder: Path) -> None:
    _, orphan, _ = defihacklabs.read_reports(folder)
    assert orphan.source_id == "202401_orphan"
    assert orphan.date == dt.date(2024, 1, 1)
    assert orphan.date_precision == "month"
    assert orphan.chains == []
    assert orphan.loss_usd is None
    assert orphan.loss_usd_basis is None
    assert orphan.loss_text == "~52 BNB"
    assert orphan.attack_type_raw is None
    assert orphan.addresses == []
    # No README lists it: the report points at the PoC file itself.
    assert orphan.url == (
        f"{defihacklabs.REPOSITORY}/blob/{defihacklabs.COMMIT}/src/test/2024-01/Orphan_exp.sol"
    )


def test_an_incident_without_a_poc_is_reported_not_confirmed(folder: Path) -> None:
    *_, unproven = defihacklabs.read_reports(folder)
    assert unproven.confirmed is False
    assert unproven.references == []
    assert unproven.transactions == []


def test_the_bundled_csv_files_read_whole() -> None:
    reports = defihacklabs.read_reports(DATA)
    ids = [r.source_id for r in reports]
    assert len(reports) == 860
    assert len(set(ids)) == len(ids)
    euler = next(r for r in reports if r.source_id == "20230313_eulerfinance")
    assert euler.date == dt.date(2023, 3, 13)
    assert euler.confirmed
    assert euler.url is not None
    assert euler.url.endswith("/past/2023/README.md")
    assert sum(len(r.addresses) for r in reports) >= 1917  # one row each, more for two chains

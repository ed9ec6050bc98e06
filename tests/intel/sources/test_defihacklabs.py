import datetime as dt
from pathlib import Path

import pytest

from kamiyo.intel.sources import defihacklabs
from kamiyo.intel.vocabulary import AddressRole

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
        "20240100_orphan,2024-01,Orphan,,,,~52 BNB,poc_header,,src/test/2024-01/Orphan_exp.sol,,,,"
        "poc_not_in_readme\n",
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
    example, _ = defihacklabs.read_records(folder)
    assert example.id == "20240105_example"
    assert example.date == dt.date(2024, 1, 5)
    assert example.date_precision == "day"
    assert example.chains == ["ethereum", "bsc"]
    assert example.loss_usd == 1_500_000
    assert example.loss_usd_basis == "usd"
    assert example.attack_type_raw == "Reentrancy"
    assert example.status == "confirmed"
    # Transaction hashes are lower-cased and de-duplicated; they sit on the first chain.
    assert [(t.chain, t.hash) for t in example.transactions] == [
        ("ethereum", "0xaaaa"),
        ("ethereum", "0xbbbb"),
    ]
    # Duplicate links collapse; each PoC file becomes a pinned link.
    assert example.references[0] == "https://x.com/peckshield/status/1"
    assert len(example.references) == 3
    assert example.references[1].startswith(f"{defihacklabs.REPOSITORY}/blob/")
    assert example.source.name == "defihacklabs"
    assert example.source.url is not None
    assert example.source.url.endswith("past/2024/README.md")


def test_an_address_on_two_chains_is_listed_once_per_chain(folder: Path) -> None:
    example, _ = defihacklabs.read_records(folder)
    attackers = [a for a in example.addresses if a.role is AddressRole.ATTACKER]
    assert [(a.chain, a.address) for a in attackers] == [
        ("ethereum", "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd"),
        ("bsc", "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd"),
    ]
    victim = next(a for a in example.addresses if a.role is AddressRole.VICTIM)
    assert victim.chain is None
    assert victim.label == "VICTIM"


def test_month_only_dates_and_token_losses(folder: Path) -> None:
    _, orphan = defihacklabs.read_records(folder)
    assert orphan.date == dt.date(2024, 1, 1)
    assert orphan.date_precision == "month"
    assert orphan.chains == []
    assert orphan.loss_usd is None
    assert orphan.loss_text == "~52 BNB"
    assert orphan.attack_type_raw is None

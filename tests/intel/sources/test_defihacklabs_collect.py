"""The DeFiHackLabs adapter over a small fake repository built from the recorded excerpts.

The fake tree: the main README excerpt, its archive links pointed at the one archive excerpt
we hold (past/2024), and three PoC files, each the recorded header followed by the fork call
the same upstream file makes (quoted below). Every other PoC the sections link is missing.
"""

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from kamiyo.intel.models import AddressFact
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources import defihacklabs
from kamiyo.intel.sources.base import Document, FetchError, SourceFormatError
from kamiyo.intel.vocabulary import AddressRole

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sources" / "defihacklabs"
DATA = Path(__file__).parents[3] / "data" / "defihacklabs"
# Raw files at the commit the bundled CSV came from, so pinned links compare equal.
BASE = f"https://raw.githubusercontent.com/SunWeb3Sec/DeFiHackLabs/{defihacklabs.COMMIT}"
# PoC path -> (header fixture, the file's own fork call: line 77, 31 and 49 upstream).
POCS = {
    "src/test/2026-08/FlashstakeV2_exp.sol": (
        "FlashstakeV2_exp",
        '        vm.createSelectFork("mainnet", 25798653);',
    ),
    "src/test/2024-12/Bizness_exp.sol": (
        "Bizness_exp",
        '        vm.createSelectFork("base", blocknumToForkFrom);',
    ),
    "src/test/2024-12/Moonhacker_exp.sol": (
        "Moonhacker_exp",
        '        vm.createSelectFork("optimism", blocknumToForkFrom);',
    ),
}
SECTIONS = 15  # 8 in the main README excerpt, 7 in the 2024 archive excerpt
WITH_POC = {"20260820_flashstakev2", "20241227_bizness", "20241223_moonhacker"}


class FakeRepository:
    """An in-memory ``Fetch``: path -> body, None for "not modified", absent -> FetchError."""

    def __init__(self, base: str = BASE) -> None:
        self.base = base
        readme = (FIXTURES / "README.excerpt.md").read_text("utf-8")
        for year in ("2025", "2021"):
            readme = readme.replace(f"past/{year}/README.md", "past/2024/README.md")
        self.files: dict[str, bytes | None] = {
            "README.md": readme.encode(),
            "past/2024/README.md": (FIXTURES / "past_2024_README.excerpt.md").read_bytes(),
        }
        for path, (header, fork) in POCS.items():
            text = (FIXTURES / "poc_headers" / f"{header}.header.txt").read_text("utf-8")
            self.files[path] = f"{text}\n{fork}\n".encode()
        self.asked: list[str] = []

    async def __call__(self, location: str) -> Document | None:
        self.asked.append(location)
        path = location.removeprefix(self.base + "/")
        if path not in self.files:
            raise FetchError(f"{location}: 404 Not Found")
        body = self.files[path]
        return None if body is None else Document(location, body)

    def asked_for_pocs(self) -> list[str]:
        return [a.removeprefix(self.base + "/") for a in self.asked if "/src/test/" in a]


@pytest.fixture(scope="module")
def bundled() -> dict[str, SourceReport]:
    return {r.source_id: r for r in defihacklabs.read_reports(DATA)}


def _seen(ids: set[str]) -> Callable[[str], bool]:
    return lambda source_id: source_id in ids


# --- reproduction -----------------------------------------------------------------------


async def test_the_raw_files_reproduce_the_bundled_reports(
    bundled: dict[str, SourceReport],
) -> None:
    collected = await defihacklabs.ADAPTER.collect(FakeRepository(), BASE)
    reports = {r.source_id: r for r in collected.reports}
    assert collected.items_seen == SECTIONS
    assert len(reports) == SECTIONS
    assert set(reports) <= set(bundled)
    for source_id, report in reports.items():
        expected = bundled[source_id]
        if source_id not in WITH_POC:
            # Reported from the README alone: what the PoC header adds stays unknown, and the
            # links are the README's, in the CSV's order.
            assert report.references == [u for u in expected.references if u in report.references]
            expected = expected.model_copy(
                update={
                    "chains": [],
                    "addresses": [],
                    "transactions": [],
                    "confirmed": False,
                    "references": report.references,
                }
            )
        # Every address the CSV has is there; the few it missed are pinned in the next test.
        assert set(expected.addresses) <= set(report.addresses), source_id
        assert report.model_copy(update={"addresses": expected.addresses}) == expected, source_id


async def test_facts_the_csv_missed_are_the_only_difference(
    bundled: dict[str, SourceReport],
) -> None:
    collected = await defihacklabs.ADAPTER.collect(FakeRepository(), BASE)
    reports = {r.source_id: r for r in collected.reports}
    bizness = reports["20241227_bizness"]
    assert bizness == bundled["20241227_bizness"]
    assert bizness.chains == ["base"]
    assert bizness.loss_usd == 15_700
    assert bizness.loss_usd_basis == "usd"
    assert bizness.attack_type_raw == "Reentrancy"
    assert bizness.references == [
        "https://x.com/TenArmorAlert/status/1872857132363645205",
        f"{defihacklabs.REPOSITORY}/blob/{defihacklabs.COMMIT}/src/test/2024-12/Bizness_exp.sol",
    ]
    # Moonhacker's numbered attack contracts and FlashstakeV2's caller EOA.
    extra = {
        "20241223_moonhacker": [
            AddressFact(
                role=AddressRole.ATTACK_CONTRACT,
                chain="optimism",
                address="0x4e258f1705822c2565d54ec8795d303fdf9f768e",
                label="Attack Contract1",
            ),
            AddressFact(
                role=AddressRole.ATTACK_CONTRACT,
                chain="optimism",
                address="0x3a6eaaf2b1b02ceb2da4a768cfeda86cff89b287",
                label="Attack Contract2",
            ),
        ],
        "20260820_flashstakev2": [
            AddressFact(
                role=AddressRole.ATTACKER,
                chain="ethereum",
                address="0xa521f8c249eb055796b765642eed78c01cd620d1",
                label="Caller EOA",
            )
        ],
    }
    for source_id, added in extra.items():
        report, csv = reports[source_id], bundled[source_id]
        assert [a for a in report.addresses if a not in csv.addresses] == added
        assert [a for a in csv.addresses if a not in report.addresses] == []
        assert report.model_copy(update={"addresses": csv.addresses}) == csv


# --- collect: what is read, what is reported -------------------------------------------


async def test_missing_pocs_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kamiyo.intel.sources.defihacklabs"):
        collected = await defihacklabs.ADAPTER.collect(FakeRepository(), BASE)
    assert collected.failed == SECTIONS - len(WITH_POC)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == collected.failed
    assert "20241218_slurpycoin: PoC src/test/2024-12/SlurpyCoin_exp.sol" in " ".join(lines)
    assert all("\n" not in line for line in lines)


async def test_seen_sections_are_not_read_again() -> None:
    first = await defihacklabs.ADAPTER.collect(FakeRepository(), BASE)
    repository = FakeRepository()
    again = await defihacklabs.ADAPTER.collect(
        repository, BASE, seen=_seen({r.source_id for r in first.reports})
    )
    assert again.reports == []
    assert again.items_seen == SECTIONS
    assert again.failed == 0
    assert repository.asked_for_pocs() == []  # the READMEs only


async def test_since_rereads_recent_seen_sections_and_new_ones_whatever_their_date() -> None:
    repository = FakeRepository()
    seen = {"20260820_flashstakev2", "20260819_allbridgecctp", "20241227_bizness"}
    seen |= {"20241223_moonhacker", "20240101_orbitchain"}
    collected = await defihacklabs.ADAPTER.collect(
        repository, BASE, since=dt.date(2024, 12, 25), seen=_seen(seen)
    )
    ids = [r.source_id for r in collected.reports]
    # Seen and recent: re-read. Seen and older than since (Moonhacker, OrbitChain): left be.
    assert "20260820_flashstakev2" in ids
    assert "20241227_bizness" in ids
    assert "20241223_moonhacker" not in ids
    assert "20240101_orbitchain" not in ids
    # Not seen: reported whatever its date.
    assert "20240102_radiantcapital" in ids
    # A seen section whose PoC is missing is not reported: its stored report stays.
    assert "20260819_allbridgecctp" not in ids
    assert len(ids) == SECTIONS - 3
    assert "src/test/2024-12/Moonhacker_exp.sol" not in repository.asked_for_pocs()


async def test_a_new_section_with_a_missing_poc_is_reported_from_the_readme() -> None:
    collected = await defihacklabs.ADAPTER.collect(FakeRepository(), BASE)
    truebit = next(r for r in collected.reports if r.source_id == "20260109_truebit")
    assert truebit.confirmed is False
    assert truebit.chains == []
    assert truebit.addresses == []
    assert truebit.transactions == []
    assert truebit.loss_text == "8540ETH"
    assert truebit.references == [
        "https://www.certik.com/zh-CN/resources/blog/truebit-incident-analysis"
    ]


async def test_a_poc_two_sections_share_is_fetched_once() -> None:
    repository = FakeRepository()
    readme = repository.files["README.md"]
    assert readme is not None
    repository.files["README.md"] = readme.replace(
        b"src/test/2026-08/AllbridgeCCTP_exp.sol", b"src/test/2026-08/FlashstakeV2_exp.sol"
    )
    await defihacklabs.ADAPTER.collect(repository, BASE)
    assert repository.asked_for_pocs().count("src/test/2026-08/FlashstakeV2_exp.sol") == 1


async def test_an_unchanged_readme_means_nothing_changed() -> None:
    repository = FakeRepository()
    repository.files["README.md"] = None
    collected = await defihacklabs.ADAPTER.collect(repository, BASE)
    assert collected.reports == []
    assert collected.unchanged_documents == 1
    assert collected.failed == 0
    assert repository.asked == [f"{BASE}/README.md"]


async def test_an_unchanged_archive_is_skipped() -> None:
    repository = FakeRepository()
    repository.files["past/2024/README.md"] = None
    collected = await defihacklabs.ADAPTER.collect(repository, BASE)
    assert collected.unchanged_documents == 1
    assert collected.items_seen == 8
    assert {r.date.year for r in collected.reports} == {2026}


async def test_an_unchanged_poc_leaves_a_seen_report_alone() -> None:
    repository = FakeRepository()
    repository.files["src/test/2024-12/Bizness_exp.sol"] = None
    collected = await defihacklabs.ADAPTER.collect(
        repository, BASE, since=dt.date(2024, 12, 1), seen=_seen({"20241227_bizness"})
    )
    assert "20241227_bizness" not in {r.source_id for r in collected.reports}
    assert collected.unchanged_documents == 1


@pytest.mark.parametrize("document", ["README.md", "past/2024/README.md"])
async def test_a_changed_layout_raises(document: str) -> None:
    repository = FakeRepository()
    body = repository.files[document]
    assert body is not None
    repository.files[document] = body.replace(b"### 20", b"### Incident of 20")
    with pytest.raises(SourceFormatError, match=document.replace(".", r"\.")):
        await defihacklabs.ADAPTER.collect(repository, BASE)


async def test_a_local_folder_or_mirror_is_read_and_links_point_at_main() -> None:
    repository = FakeRepository(base="/srv/mirrors/DeFiHackLabs")
    collected = await defihacklabs.ADAPTER.collect(repository, "/srv/mirrors/DeFiHackLabs/")
    assert repository.asked[:2] == [
        "/srv/mirrors/DeFiHackLabs/README.md",
        "/srv/mirrors/DeFiHackLabs/past/2024/README.md",
    ]
    bizness = next(r for r in collected.reports if r.source_id == "20241227_bizness")
    assert bizness.url == f"{defihacklabs.REPOSITORY}/blob/main/past/2024/README.md"
    assert bizness.references[-1].endswith("/blob/main/src/test/2024-12/Bizness_exp.sol")


def test_source_info() -> None:
    info = defihacklabs.ADAPTER.info
    assert info.name == "defihacklabs"
    assert info.url == "https://raw.githubusercontent.com/SunWeb3Sec/DeFiHackLabs/main"
    assert info.licence == "Apache-2.0"
    assert info.bundled
    assert "DeFiHackLabs" in info.attribution

"""The OFAC adapter on the published format (the repository's data/ofac copy of the lists)."""

import datetime as dt
from pathlib import Path

import pytest

from kamiyo.intel.sources import ofac
from kamiyo.intel.sources.base import Collected, SourceFormatError
from tests.intel.sources.memory_fetch import MemoryFetch

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parents[3] / "data" / "ofac"
BASE = "https://lists.example/ofac"


def published() -> dict[str, bytes | None]:
    return {
        f"{BASE}/{ofac.file_name(asset)}": (DATA / ofac.file_name(asset)).read_bytes()
        for asset in ofac.ASSETS
    }


async def test_every_asset_file_is_read_into_one_list() -> None:
    fetch = MemoryFetch(published())
    collected = await ofac.ADAPTER.collect(fetch, BASE + "/")
    assert fetch.asked == [f"{BASE}/{ofac.file_name(a)}" for a in ofac.ASSETS]
    listed = collected.sanctions
    assert listed is not None
    assert listed.name == "ofac_sdn"
    assert collected.items_seen == 623  # lines in all seven files
    assert len(listed.entries) == 611  # one address may stand under several assets
    assert collected.failed == 0
    # Stored forms: EVM in lower case (the files mix cases), base58 as written.
    assert listed.entries["0x098b716b8aaf21512996dc57eb0615e2383e2f96"] == {"ETH"}
    assert listed.entries["0x4f47bc496083c727c5fbe3ce9cdf2b0f6496270c"] == {"ARB", "BSC", "ETH"}
    assert listed.entries["123WBUDmSJv4GctdVEz6Qq6z8nXSKrJ4KX"] == {"XBT"}
    assert all(not a.startswith("0x") or a == a.lower() for a in listed.entries)


async def test_unchanged_files_are_named_and_all_unchanged_hands_over_nothing() -> None:
    documents = published()
    eth = f"{BASE}/{ofac.file_name('ETH')}"
    documents[eth] = None
    collected = await ofac.ADAPTER.collect(MemoryFetch(documents), BASE)
    assert collected.sanctions is not None
    assert collected.sanctions.unchanged_assets == {"ETH"}
    assert collected.unchanged_documents == 1
    nothing = await ofac.ADAPTER.collect(MemoryFetch(dict.fromkeys(documents)), BASE)
    assert nothing.sanctions is None
    assert nothing.unchanged_documents == len(ofac.ASSETS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<!DOCTYPE html>\n<html><body>Rate limited</body></html>\n", "not an address list"),
        (b"0x098b716b8aaf21512996dc57eb0615e2383e2f96\n0x722122", "does not end with a line"),
        ("0x098b716b8aaf21512996dc57eb0615e2383e2f96 é\n".encode(), "not ASCII"),
    ],
)
async def test_a_document_that_is_no_list_fails_the_whole_list(body: bytes, message: str) -> None:
    documents = published()
    documents[f"{BASE}/{ofac.file_name('USDT')}"] = body
    with pytest.raises(SourceFormatError, match=message):
        await ofac.ADAPTER.collect(MemoryFetch(documents), BASE)


async def test_a_missing_file_fails_the_whole_list() -> None:
    documents = published()
    del documents[f"{BASE}/{ofac.file_name('TRX')}"]
    with pytest.raises(Exception, match="HTTP 404"):
        await ofac.ADAPTER.collect(MemoryFetch(documents), BASE)


def test_an_address_of_an_unread_format_is_counted_and_left_out() -> None:
    collected = Collected()
    body = b"0x098b716b8aaf21512996dc57eb0615e2383e2f96\n\nNC4C6PSUW5CLTDT5SXAGJD\n"
    addresses = ofac.parse_asset(body, "ETH", "ETH list", collected)
    assert addresses == ["0x098b716b8aaf21512996dc57eb0615e2383e2f96"]
    assert (collected.items_seen, collected.failed) == (2, 1)


async def test_empty_lists_everywhere_are_an_error() -> None:
    empty = dict.fromkeys(published(), b"")
    with pytest.raises(SourceFormatError, match="none of the 7 lists holds an address"):
        await ofac.ADAPTER.collect(MemoryFetch(empty), BASE)


def test_the_repository_folder_reads_with_its_date() -> None:
    listed, lines = ofac.read_folder(DATA)
    assert str(listed.date) == "2024-09-27"
    assert sum(len(v) for v in lines.values()) == 623
    again = ofac.from_lines(listed.name, listed.date, lines)
    assert again == listed


async def test_a_local_folder_takes_the_date_of_its_snapshot_file() -> None:
    folder = "/copies/ofac"
    documents = {loc.replace(BASE, folder): body for loc, body in published().items()}
    undated = await ofac.ADAPTER.collect(MemoryFetch(documents), folder)
    assert undated.sanctions is not None  # no snapshot.json: dated the day it was read
    assert undated.sanctions.date == dt.datetime.now(dt.UTC).date()
    documents[f"{folder}/snapshot.json"] = (DATA / "snapshot.json").read_bytes()
    dated = await ofac.ADAPTER.collect(MemoryFetch(documents), folder)
    assert dated.sanctions is not None
    assert str(dated.sanctions.date) == "2024-09-27"
    documents[f"{folder}/snapshot.json"] = b'{"date": "last week"}'
    with pytest.raises(SourceFormatError, match="no date as YYYY-MM-DD"):
        await ofac.ADAPTER.collect(MemoryFetch(documents), folder)

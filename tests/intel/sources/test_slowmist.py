import datetime as dt
import logging

import pytest

from kamiyo.intel.sources import slowmist
from kamiyo.intel.sources.base import Adapter, SourceFormatError
from tests.intel.sources.memory_fetch import MemoryFetch, fixture

ADAPTER: Adapter = slowmist.ADAPTER
PAGE_ONE = fixture("slowmist", "hacked_list_page.reconstructed.html")
_TEXT = PAGE_ONE.decode()
_LIST_START = '<div class="case-content">\n<ul>\n'
_LIST_END = "</ul>\n</div>"
_HEAD, _REST = _TEXT.split(_LIST_START, 1)
_TAIL = _REST.split(_LIST_END, 1)[1]
PAGE_ONE_IDS = [
    "20260327-moonwell",
    "20260326-unknown-contract-stake-on-bsc",
    "20260325-example-wallet-user",
]


def item(day: str, target: str, amount: str = "$ 10,000", method: str = "Reentrancy") -> str:
    """One list item in the fixture's markup."""
    return (
        f'<li>\n<span class="time">{day}</span>\n<h3><em>Hacked target: </em>{target}</h3>\n'
        f"<p><em>Description of the event: </em>Funds were taken from {target}.</p>\n"
        f"<p><span><em>Amount of loss: </em>{amount}</span>"
        f"<span><em>Attack method: </em>{method}</span></p>\n"
        f'<p class="link-reference"><a href="https://example.com/{day}" target="_blank">'
        "View Reference Sources</a></p>\n</li>\n"
    )


def page(*items: str) -> bytes:
    """A list page in the fixture's markup holding ``items``."""
    return (_HEAD + _LIST_START + "".join(items) + _LIST_END + _TAIL).encode()


def url(number: int) -> str:
    return f"https://hacked.slowmist.io/?c=&page={number}"


def test_parse_the_fixture_page() -> None:
    collected = slowmist.parse_page(PAGE_ONE)
    assert (collected.items_seen, collected.failed) == (3, 0)
    moonwell, stake, phishing = collected.reports
    assert [r.source_id for r in collected.reports] == PAGE_ONE_IDS
    assert moonwell.source == "slowmist"
    assert moonwell.date == dt.date(2026, 3, 27)
    assert moonwell.protocol == "Moonwell"
    assert (moonwell.loss_usd, moonwell.loss_usd_basis) == (1_080_000, "usd")
    assert moonwell.loss_text == "$ 1,080,000"
    assert moonwell.attack_type_raw == "Governance Attack"
    assert moonwell.description is not None
    assert moonwell.description.startswith("A hostile governance proposal on the Moonriver")
    assert moonwell.references == ["https://example.com/moonwell"]
    assert moonwell.url is None
    assert moonwell.chains == []
    # The target names its chain at the end.
    assert (stake.protocol, stake.chains) == ("unknown contract (Stake) on BSC", ["bsc"])
    assert (stake.loss_usd, stake.attack_type_raw) == (133_000, "Oracle Manipulation")
    # "-" is an unknown loss.
    assert (phishing.loss_usd, phishing.loss_usd_basis, phishing.loss_text) == (None, None, None)
    assert phishing.attack_type_raw == "Phishing"


def test_odd_amounts_and_repeated_targets() -> None:
    collected = slowmist.parse_page(
        page(
            item("2025-01-02", "Example Vault", amount="1,000 ETH"),
            item("2025-01-02", "Example Vault", amount="$ 2.5M"),
            item("2025-01-01", "Example Vault on Example Street"),
        )
    )
    tokens, dollars, street = collected.reports
    assert (tokens.loss_usd, tokens.loss_text) == (None, "1,000 ETH")  # kept as written only
    assert (dollars.loss_usd, dollars.loss_text) == (2_500_000, "$ 2.5M")
    assert [tokens.source_id, dollars.source_id] == [
        "20250102-example-vault",
        "20250102-example-vault-2",
    ]
    assert street.chains == []


def test_a_bad_item_is_counted_and_the_rest_go_on(caplog: pytest.LogCaptureFixture) -> None:
    undated = item("2025-01-03", "No Date").replace('<span class="time">2025-01-03</span>', "")
    untargeted = item("2025-01-02", "").replace("<em>Hacked target: </em>", "")
    bad_date = item("03/01/2025", "Bad Date")
    with caplog.at_level(logging.WARNING, logger=slowmist.__name__):
        collected = slowmist.parse_page(
            page(undated, untargeted, bad_date, item("2025-01-01", "Fine"))
        )
    assert [r.protocol for r in collected.reports] == ["Fine"]
    assert (collected.items_seen, collected.failed) == (4, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "slowmist: item #0 skipped: no date",
        "slowmist: item #1 skipped: no hacked target",
        "slowmist: item #2 skipped: no date",
    ]


def test_an_empty_list_is_an_empty_page() -> None:
    collected = slowmist.parse_page(page())
    assert (collected.items_seen, collected.failed, collected.reports) == (0, 0, [])


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body><div class='news-list'><ul><li>2026-03-27 Moonwell</li></ul></div></body>"
        b"</html>",
        b'{"data": []}',
        b"",
        PAGE_ONE[: PAGE_ONE.index(b"case-content")],  # cut off before the list
    ],
)
def test_a_page_without_the_list_is_a_changed_layout(body: bytes) -> None:
    with pytest.raises(SourceFormatError) as raised:
        slowmist.parse_page(body)
    message = str(raised.value)
    assert message.startswith("slowmist: the page has no incident list (div.case-content)")
    assert "Moonwell" not in message
    assert "\n" not in message


def test_page_urls() -> None:
    assert slowmist.page_url(slowmist.INFO.url, 1) == url(1)
    assert (
        slowmist.page_url("http://127.0.0.1:8080/slowmist/?c=ETH&page=7", 2)
        == "http://127.0.0.1:8080/slowmist/?c=ETH&page=2"
    )


PAGE_TWO = page(item("2026-03-20", "Example Lend"), item("2026-03-19", "Example DEX"))
PAGE_THREE = page(item("2026-03-10", "Example Perps"))


def _site(*pages: bytes | None) -> dict[str, bytes | None]:
    return {url(n): body for n, body in enumerate(pages, start=1)}


@pytest.mark.anyio
async def test_a_first_run_reads_every_page_up_to_the_empty_one() -> None:
    fetch = MemoryFetch(_site(PAGE_ONE, PAGE_TWO, PAGE_THREE, page()))
    collected = await ADAPTER.collect(fetch, slowmist.INFO.url)
    assert fetch.asked == [url(1), url(2), url(3), url(4)]
    assert [r.source_id for r in collected.reports] == [
        *PAGE_ONE_IDS,
        "20260320-example-lend",
        "20260319-example-dex",
        "20260310-example-perps",
    ]
    assert (collected.items_seen, collected.failed) == (6, 0)


@pytest.mark.anyio
async def test_paging_stops_at_the_first_page_of_items_already_seen() -> None:
    stored = {"20260320-example-lend", "20260319-example-dex", "20260310-example-perps"}
    fetch = MemoryFetch(_site(PAGE_ONE, PAGE_TWO, PAGE_THREE, page()))
    collected = await ADAPTER.collect(fetch, slowmist.INFO.url, seen=stored.__contains__)
    assert fetch.asked == [url(1), url(2)]
    assert [r.source_id for r in collected.reports][:3] == PAGE_ONE_IDS
    assert collected.items_seen == 5


@pytest.mark.anyio
async def test_a_partly_seen_page_is_not_a_stop() -> None:
    stored = {"20260327-moonwell", "20260320-example-lend"}
    fetch = MemoryFetch(_site(PAGE_ONE, PAGE_TWO, PAGE_THREE, page()))
    await ADAPTER.collect(fetch, slowmist.INFO.url, seen=stored.__contains__)
    assert fetch.asked == [url(1), url(2), url(3), url(4)]


@pytest.mark.anyio
async def test_nothing_new_reads_one_page() -> None:
    fetch = MemoryFetch(_site(PAGE_ONE, PAGE_TWO))
    collected = await ADAPTER.collect(fetch, slowmist.INFO.url, seen=lambda source_id: True)
    assert fetch.asked == [url(1)]
    assert collected.items_seen == 3


@pytest.mark.anyio
async def test_since_stops_paging_once_items_are_older() -> None:
    fetch = MemoryFetch(_site(PAGE_ONE, PAGE_TWO, PAGE_THREE))
    collected = await ADAPTER.collect(fetch, slowmist.INFO.url, since=dt.date(2026, 3, 20))
    assert fetch.asked == [url(1), url(2)]
    assert [r.date.day for r in collected.reports] == [27, 26, 25, 20]


@pytest.mark.anyio
async def test_a_changed_layout_on_a_later_page_is_an_error() -> None:
    changed = b"<html><body><main>New design</main></body></html>"
    fetch = MemoryFetch(_site(PAGE_ONE, changed))
    with pytest.raises(SourceFormatError, match=r"\(page 2: https://hacked\.slowmist\.io/\?c="):
        await ADAPTER.collect(fetch, slowmist.INFO.url)


@pytest.mark.anyio
async def test_not_modified_stops_at_once() -> None:
    fetch = MemoryFetch(_site(None, PAGE_TWO))
    collected = await ADAPTER.collect(fetch, slowmist.INFO.url)
    assert fetch.asked == [url(1)]
    assert (collected.unchanged_documents, collected.reports) == (1, [])


@pytest.mark.anyio
async def test_a_server_that_ignores_the_page_number_is_read_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetch = MemoryFetch(_site(PAGE_ONE, PAGE_ONE, PAGE_ONE))
    with caplog.at_level(logging.WARNING, logger=slowmist.__name__):
        collected = await ADAPTER.collect(fetch, slowmist.INFO.url)
    assert fetch.asked == [url(1), url(2)]
    assert [r.source_id for r in collected.reports] == PAGE_ONE_IDS
    assert "repeats the page before" in caplog.text


@pytest.mark.anyio
async def test_paging_stops_at_the_cap(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(slowmist, "PAGE_CAP", 3)
    fetch = MemoryFetch(_site(*(page(item(f"2026-02-{28 - n:02d}", f"P{n}")) for n in range(5))))
    with caplog.at_level(logging.WARNING, logger=slowmist.__name__):
        collected = await ADAPTER.collect(fetch, slowmist.INFO.url)
    assert fetch.asked == [url(1), url(2), url(3)]
    assert len(collected.reports) == 3
    assert "stopped at the page cap (3 pages)" in caplog.text


@pytest.mark.anyio
async def test_a_local_file_is_one_page() -> None:
    fetch = MemoryFetch({"/tmp/slowmist-page.html": PAGE_ONE})
    collected = await ADAPTER.collect(fetch, "/tmp/slowmist-page.html")
    assert fetch.asked == ["/tmp/slowmist-page.html"]
    assert len(collected.reports) == 3

import datetime as dt
import logging

import pytest

from kamiyo.intel.sources import rekt
from kamiyo.intel.sources.base import Adapter, SourceFormatError
from tests.intel.sources.memory_fetch import MemoryFetch, fixture

ADAPTER: Adapter = rekt.ADAPTER
FEED = fixture("rekt", "feed.reconstructed.xml")


def rss(*items: str) -> bytes:
    """An RSS 2.0 document in the fixture's channel, holding ``items``."""
    head, rest = FEED.decode().split("<item>", 1)
    tail = rest.rsplit("</item>", 1)[1]
    return (head + "".join(items) + tail).encode()


def item(
    title: str = "Example Swap - Rekt",
    link: str | None = "https://rekt.news/example-swap-rekt",
    published: str | None = "Mon, 06 Jan 2025 10:00:00 GMT",
    summary: str = "<p>Example Swap lost $1.5M to a reentrancy bug.</p>",
) -> str:
    parts = [f"<item><title><![CDATA[{title}]]></title>"]
    if link:
        parts.append(f"<link>{link}</link><guid isPermaLink='true'>{link}</guid>")
    if published:
        parts.append(f"<pubDate>{published}</pubDate>")
    parts.append(f"<description><![CDATA[{summary}]]></description></item>")
    return "".join(parts)


def test_info() -> None:
    assert (rekt.INFO.name, rekt.INFO.url) == ("rekt", "https://rekt.news/rss/feed.xml")
    assert "rekt.news" in rekt.INFO.attribution


def test_parse_the_fixture_feed() -> None:
    collected = rekt.parse_rss(FEED)
    assert (collected.items_seen, collected.failed) == (2, 0)
    drift, sss = collected.reports
    assert drift.source == "rekt"
    assert drift.source_id == "drift-protocol-rekt"
    assert drift.url == "https://rekt.news/drift-protocol-rekt"
    assert drift.protocol == "Drift Protocol"
    assert drift.date == dt.date(2026, 4, 1)
    assert drift.description == (
        "An attacker who held the admin keys emptied the perpetuals exchange: about $285M gone."
    )
    assert (drift.loss_usd, drift.loss_usd_basis, drift.loss_text) == (285e6, "usd", "$285M")
    assert drift.chains == []
    assert drift.attack_type_raw is None
    assert drift.references == []
    assert (sss.source_id, sss.protocol) == ("sss-rekt", "Super Sushi Samurai")
    assert sss.date == dt.date(2024, 3, 22)
    assert (sss.loss_usd, sss.loss_text) == (4.8e6, "$4.8M")


@pytest.mark.parametrize(
    ("title", "protocol"),
    [
        ("Euler Finance - REKT", "Euler Finance"),
        ("Cream Finance - REKT 2", "Cream Finance"),
        ("Ronin Network \u2013 Rekt II", "Ronin Network"),
        ("Multichain - rekt", "Multichain"),
        ("The Week in Rekt", None),
        ("Rekt - The Big Lie", None),
        ("Interview: an auditor on bridges", None),
    ],
)
def test_titles(title: str, protocol: str | None) -> None:
    assert rekt.protocol_of(title) == protocol


def test_the_loss_is_read_only_when_one_figure_is_stated() -> None:
    collected = rekt.parse_rss(
        rss(
            item(link="https://rekt.news/a-rekt", summary="<p>A $2B protocol lost $5M.</p>"),
            item(link="https://rekt.news/b-rekt", summary="<p>Nobody knows how much.</p>"),
            item(link="https://rekt.news/c-rekt/", summary="$3 million, yes, $3,000,000."),
        )
    )
    two_figures, none, same_figure = collected.reports
    assert (two_figures.loss_usd, two_figures.loss_text) == (None, None)
    assert none.loss_usd is None
    assert (same_figure.source_id, same_figure.loss_usd) == ("c-rekt", 3e6)


def test_editorials_are_dropped_and_bad_items_counted(caplog: pytest.LogCaptureFixture) -> None:
    body = rss(
        item(title="The Week in Rekt", link="https://rekt.news/week-in-rekt"),
        item(title="Undated - Rekt", link="https://rekt.news/undated-rekt", published=None),
        item(title="Nowhere - Rekt", link=None),
        item(title=""),
        item(title="Fine - Rekt", link="https://rekt.news/fine-rekt"),
    )
    with caplog.at_level(logging.WARNING, logger=rekt.__name__):
        collected = rekt.parse_rss(body)
    assert [r.protocol for r in collected.reports] == ["Fine"]
    assert (collected.items_seen, collected.failed) == (5, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "rekt: item #1 (Undated - Rekt) skipped: no date",
        "rekt: item #2 (Nowhere - Rekt) skipped: no link or guid to identify it by",
        "rekt: item #3 skipped: no title",
    ]


def test_long_descriptions_are_cut() -> None:
    words = " ".join(["drained"] * 200)
    [report] = rekt.parse_rss(rss(item(summary=f"<p>{words}</p>"))).reports
    assert report.description is not None
    assert len(report.description) <= rekt.DESCRIPTION_LIMIT
    assert report.description.endswith("drained…")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (FEED[: len(FEED) // 2], "the feed is not well-formed XML"),
        (b"<!DOCTYPE html><html><body><h1>rekt</h1></body></html>", "not an RSS or Atom feed"),
        (b'{"items": []}', "not an RSS or Atom feed"),
        (b"", "not an RSS or Atom feed"),
    ],
)
def test_a_body_that_does_not_parse_is_a_format_error(body: bytes, problem: str) -> None:
    with pytest.raises(SourceFormatError) as raised:
        rekt.parse_rss(body)
    message = str(raised.value)
    assert message.startswith("rekt: ")
    assert problem in message
    assert "\n" not in message
    assert "Drift" not in message


@pytest.mark.anyio
async def test_collect() -> None:
    fetch = MemoryFetch({rekt.INFO.url: FEED})
    collected = await ADAPTER.collect(fetch, rekt.INFO.url, since=dt.date(2025, 1, 1))
    assert fetch.asked == [rekt.INFO.url]
    assert [r.source_id for r in collected.reports] == ["drift-protocol-rekt"]
    assert collected.items_seen == 2
    unchanged = await ADAPTER.collect(MemoryFetch({rekt.INFO.url: None}), rekt.INFO.url)
    assert (unchanged.unchanged_documents, unchanged.reports) == (1, [])

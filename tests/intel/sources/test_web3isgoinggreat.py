import datetime as dt
import logging

import pytest

from kamiyo.intel.sources import web3isgoinggreat as w3igg
from kamiyo.intel.sources.base import Adapter, SourceFormatError
from tests.intel.sources.memory_fetch import MemoryFetch, fixture

ADAPTER: Adapter = w3igg.ADAPTER
FEED = fixture("web3isgoinggreat", "feed.atom.reconstructed.xml")
CASES = fixture("web3isgoinggreat", "feed.filter_cases.atom.xml")
BLUEBENX = (
    "brazilian-crypto-lender-bluebenx-halts-customer-withdrawals-and-lays-off-employees-after-"
    "32-million-hack"
)


def test_info_gives_the_licence_and_attribution() -> None:
    assert w3igg.INFO.name == "web3isgoinggreat"
    assert w3igg.INFO.url == "https://web3isgoinggreat.com/feed.xml"
    assert w3igg.INFO.licence == "CC BY-SA 3.0"
    assert "Molly White" in w3igg.INFO.attribution
    assert "CC BY-SA 3.0" in w3igg.INFO.attribution


def test_parse_the_fixture_feed() -> None:
    collected = w3igg.parse_atom(FEED)
    assert (collected.items_seen, collected.failed) == (2, 0)
    bluebenx, oracle = collected.reports
    assert bluebenx.source == "web3isgoinggreat"
    assert bluebenx.source_id == BLUEBENX
    assert bluebenx.url == f"https://web3isgoinggreat.com/single/{BLUEBENX}"
    assert bluebenx.date == dt.date(2022, 8, 14)
    assert (bluebenx.protocol, bluebenx.aliases) == ("BlueBenx", [])
    assert (bluebenx.loss_usd, bluebenx.loss_usd_basis) == (32e6, "usd")
    assert bluebenx.loss_text == "$32 million"
    assert bluebenx.description == (
        "BlueBenx, a lending platform in Brazil, closed abruptly and blamed a hack it put at "
        "160 million BRL (US$32 million)."
    )
    assert bluebenx.references == []  # the image is not a reference
    assert oracle.source_id == "example-defi-protocol-oracle-exploit"
    assert oracle.protocol == "Example DeFi"
    assert (oracle.loss_usd, oracle.loss_text) == (1.2e6, "$1.2 million")
    assert oracle.references == ["https://example.com/post-mortem"]
    assert oracle.description == (
        "An attacker moved a thinly traded price feed and borrowed against collateral it "
        "overvalued."
    )


def test_only_hacks_are_kept() -> None:
    collected = w3igg.parse_atom(CASES)
    assert (collected.items_seen, collected.failed) == (6, 0)
    kept = {r.source_id: r for r in collected.reports}
    # Kept: hack words in the title; "attacker" only in the body; phishing. Dropped: a rug pull
    # (although its body says "stolen"), an arrest (although its title says "exploiter"), and
    # a price fall with no hack word at all.
    assert list(kept) == [
        "example-bridge-drained-4-million",
        "example-lend-loses-750000",
        "example-wallet-users-phishing",
    ]
    bridge = kept["example-bridge-drained-4-million"]
    assert (bridge.protocol, bridge.loss_usd) == ("Example Bridge", 4e6)
    assert bridge.references == ["https://example.com/bridge-incident"]
    assert kept["example-lend-loses-750000"].loss_usd == 750_000
    assert kept["example-wallet-users-phishing"].protocol == "Example Wallet"


@pytest.mark.parametrize(
    ("title", "body", "kept"),
    [
        ("Example Finance hacked for $3 million", "", True),
        ("Example Finance loses $3 million", "The attacker used a flash loan.", True),
        ("Exchange hot wallet compromised", "", True),
        ("Thieves take NFTs from Example Market", "", True),
        ("Example Exchange suffers $30 million heist", "", True),
        ("Example NFT team rug pulls", "They stole the mint funds.", False),
        ("Example Token rugpull", "", False),
        ("Example Swap exploiter sentenced to five years", "", False),
        ("Investors sue Example Lend after hack", "", False),
        ("Example DAO token drops 90%", "Holders sold.", False),
        ("A shack in the hackathon", "Unrelated.", False),  # words, not substrings
    ],
)
def test_the_hack_rule(title: str, body: str, kept: bool) -> None:
    assert w3igg.is_hack(title, body) is kept


@pytest.mark.parametrize(
    ("title", "protocol", "aliases"),
    [
        ("Euler Finance hacked for $197 million", "Euler Finance", []),
        ("Axie Infinity's Ronin network suffers $625 million exploit", "Ronin", ["Axie Infinity"]),
        ("Binance\u2019s hot wallet drained", "Binance", []),
        ("$190 million drained from Nomad bridge", "Nomad", []),
        ("Hacker steals $5 million from Example Swap", "Example Swap", []),
        ("Attackers drain $3 million from Example Bridge on Ethereum", "Example Bridge", []),
        ("dYdX hit by oracle exploit", "dYdX", []),
        ("The Example protocol hacked", "Example", []),
        ("Someone hacked for $2 million", "Someone hacked for $2 million", []),
    ],
)
def test_the_protocol_named_by_a_headline(title: str, protocol: str, aliases: list[str]) -> None:
    assert w3igg.protocol_of(title) == (protocol, aliases)


def test_bad_entries_are_counted_and_the_rest_go_on(caplog: pytest.LogCaptureFixture) -> None:
    head, first, *rest = CASES.decode().split("<entry>")
    # The first entry loses its dates, the second its id and link.
    first = first.replace("<published>2024-05-02T10:00:00.000Z</published>", "")
    first = first.replace("<updated>2024-05-02T10:00:00.000Z</updated>", "")
    text = "<entry>".join([head, first, *rest])
    text = text.replace(
        '<link href="https://web3isgoinggreat.com/single/example-lend-loses-750000" />', ""
    )
    text = text.replace(
        "<id>https://web3isgoinggreat.com/single/example-lend-loses-750000</id>", "<id>x</id>"
    )
    with caplog.at_level(logging.WARNING, logger=w3igg.__name__):
        collected = w3igg.parse_atom(text.encode())
    assert [r.source_id for r in collected.reports] == ["example-wallet-users-phishing"]
    assert (collected.items_seen, collected.failed) == (6, 2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("web3isgoinggreat: entry #0 (Example Bridge drained")
    assert lines[0].endswith("skipped: no date")
    assert lines[1].endswith("skipped: no entry URL to identify it by")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (FEED[: len(FEED) * 2 // 3], "the feed is not well-formed XML"),
        (b"<html><head><title>Web3 is going just great</title></head></html>", "not an RSS"),
        (b"Service Unavailable", "not an RSS or Atom feed"),
    ],
)
def test_a_body_that_does_not_parse_is_a_format_error(body: bytes, problem: str) -> None:
    with pytest.raises(SourceFormatError) as raised:
        w3igg.parse_atom(body)
    message = str(raised.value)
    assert message.startswith("web3isgoinggreat: ")
    assert problem in message
    assert "BlueBenx" not in message
    assert "\n" not in message


@pytest.mark.anyio
async def test_collect() -> None:
    fetch = MemoryFetch({w3igg.INFO.url: CASES})
    collected = await ADAPTER.collect(fetch, w3igg.INFO.url, since=dt.date(2024, 5, 1))
    assert fetch.asked == [w3igg.INFO.url]
    assert [r.date for r in collected.reports] == [dt.date(2024, 5, 2), dt.date(2024, 5, 1)]
    unchanged = await ADAPTER.collect(MemoryFetch({w3igg.INFO.url: None}), w3igg.INFO.url)
    assert (unchanged.unchanged_documents, unchanged.reports) == (1, [])

import datetime as dt
import json
import logging

import pytest

from kamiyo.intel.sources import defillama, defillama_protocols
from kamiyo.intel.sources.base import Adapter, SourceFormatError
from tests.intel.sources.memory_fetch import MemoryFetch, fixture

# Both adapters satisfy the interface (checked by mypy).
ADAPTERS: tuple[Adapter, ...] = (defillama.ADAPTER, defillama_protocols.ADAPTER)


def _hacks(*rows: object) -> bytes:
    return json.dumps(list(rows)).encode()


def _hack(**fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "date": 1711065600,
        "name": "Example Swap",
        "classification": "Protocol Logic",
        "technique": "Reentrancy",
        "amount": 1000,
        "chain": ["Ethereum"],
        "bridgeHack": False,
        "targetType": "DeFi Protocol",
        "source": "",
        "returnedFunds": None,
        "defillamaId": None,
        "language": "Solidity",
    }
    row.update(fields)
    return row


def test_infos_name_their_sources() -> None:
    assert [a.info.name for a in ADAPTERS] == ["defillama", "defillama_protocols"]
    assert defillama.INFO.url == "https://api.llama.fi/hacks"
    assert defillama_protocols.INFO.url == "https://api.llama.fi/protocols"
    assert defillama_protocols.INFO.licence == defillama.INFO.licence
    assert all("DeFiLlama" in a.info.attribution for a in ADAPTERS)


def test_docs_example_hack() -> None:
    collected = defillama.parse_hacks(fixture("defillama", "hacks.docs-example.json"))
    assert (collected.items_seen, collected.failed) == (1, 0)
    [report] = collected.reports
    assert report.source == "defillama"
    assert report.source_id == "20240322-super-sushi-samurai"
    assert report.date == dt.date(2024, 3, 22)
    assert report.protocol == "Super Sushi Samurai"
    assert report.kind == "gaming"
    assert report.chains == ["blast"]
    assert (report.loss_usd, report.loss_usd_basis) == (4_800_000, "usd")
    assert report.attack_type_raw == "Infinite Mint and Dump (Protocol Logic)"
    assert report.references == ["https://rekt.news/sss-rekt/"]
    assert report.funds_returned is None
    assert report.funds_returned_usd is None
    assert report.defillama_id is None
    assert report.url is None
    assert report.transactions == []
    assert report.addresses == []


def test_reconstructed_hacks() -> None:
    collected = defillama.parse_hacks(fixture("defillama", "hacks.reconstructed.json"))
    assert (collected.items_seen, collected.failed) == (4, 0)
    balancer, bridge, perps, exchange = collected.reports
    assert balancer.source_id == "20260830-balancer-v1"
    assert balancer.defillama_id == "116"
    assert (balancer.kind, balancer.chains) == ("defi", ["ethereum"])
    assert balancer.attack_type_raw == "Rounding Error (Token & Share Accounting)"
    assert balancer.references == []  # the live server's empty ``source``
    assert bridge.kind == "bridge"
    assert bridge.chains == ["arbitrum", "ethereum"]
    assert (bridge.funds_returned, bridge.funds_returned_usd) == (True, 1_250_000)
    assert bridge.attack_type_raw == "Private Key Compromised (Infrastructure)"
    assert perps.chains == ["solana"]
    assert (exchange.kind, exchange.chains) == ("cex", ["bitcoin", "ethereum", "tron"])
    assert exchange.date == dt.date(2024, 3, 22)


def test_unknown_chains_are_dropped_and_logged_once_per_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = _hacks(
        _hack(name="A", chain=["Ethereum", "Example L9"]),
        _hack(name="B", chain=["Example L9", "BSC"]),
        _hack(name="C", chain=["Other Chain X"]),
    )
    with caplog.at_level(logging.WARNING, logger=defillama.__name__):
        collected = defillama.parse_hacks(body)
    assert [r.chains for r in collected.reports] == [["ethereum"], ["bsc"], []]
    assert collected.failed == 0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "'Example L9'" in lines[0]
    assert "2 item(s)" in lines[0]
    assert "'Other Chain X'" in lines[1]


def test_bad_items_are_counted_logged_once_and_the_rest_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = _hacks(
        _hack(name="Good One"),
        _hack(date=None, name="Undated"),
        _hack(name=""),
        "not an object",
        _hack(date="2024-03-22", name="Text Date"),
        _hack(name="!!!"),
        _hack(name="Good Two", date=1711152000),
    )
    with caplog.at_level(logging.WARNING, logger=defillama.__name__):
        collected = defillama.parse_hacks(body)
    assert [r.protocol for r in collected.reports] == ["Good One", "Good Two"]
    assert (collected.items_seen, collected.failed) == (7, 5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5
    assert lines[0] == "defillama: hack #1 (Undated) skipped: no date"
    assert "no name" in lines[1]
    assert "not a JSON object" in lines[2]
    assert "no date" in lines[3]
    assert "no letters or digits" in lines[4]


def test_ids_amounts_and_returned_funds() -> None:
    body = _hacks(
        _hack(name="Twin"),
        _hack(name="Twin", amount=0, returnedFunds=0),
        _hack(name="Twin", amount=None, defillamaId=42),
    )
    first, second, third = defillama.parse_hacks(body).reports
    # No id of its own: day + name, a repeat numbered in array order.
    assert [first.source_id, second.source_id, third.source_id] == [
        "20240322-twin",
        "20240322-twin-2",
        "20240322-twin-3",
    ]
    assert (first.loss_usd, first.loss_usd_basis) == (1000, "usd")
    # 0 and null do not say whether anything was taken.
    assert (second.loss_usd, second.loss_usd_basis) == (None, None)
    assert (second.funds_returned, second.funds_returned_usd) == (False, 0)
    assert third.loss_usd is None
    assert third.defillama_id == "42"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (fixture("defillama", "hacks.reconstructed.json")[:300], "not JSON"),
        (b'{"hacks": []}', "expected a JSON array of hacks, found a JSON object"),
        (b"<!DOCTYPE html><html><body>Rate limited</body></html>", "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_a_body_that_does_not_parse_is_a_format_error(body: bytes, problem: str) -> None:
    with pytest.raises(SourceFormatError) as raised:
        defillama.parse_hacks(body)
    message = str(raised.value)
    assert message.startswith("defillama: ")
    assert problem in message
    assert "\n" not in message
    assert "Rate limited" not in message
    assert "Balancer" not in message


@pytest.mark.anyio
async def test_collect_reads_the_base_location_and_honours_since() -> None:
    mirror = "http://127.0.0.1:9/mirror/hacks.json"
    fetch = MemoryFetch({mirror: fixture("defillama", "hacks.reconstructed.json")})
    collected = await defillama.ADAPTER.collect(fetch, mirror, since=dt.date(2026, 4, 1))
    assert fetch.asked == [mirror]
    assert [r.protocol for r in collected.reports] == [
        "Balancer V1",
        "Example Bridge",
        "Example Solana Perps",
    ]
    assert collected.items_seen == 4  # listed, whether or not in the window


@pytest.mark.anyio
async def test_collect_not_modified() -> None:
    fetch = MemoryFetch({defillama.INFO.url: None, defillama_protocols.INFO.url: None})
    for adapter in ADAPTERS:
        collected = await adapter.collect(fetch, adapter.info.url)
        assert collected.unchanged_documents == 1
        assert collected.reports == []
        assert collected.protocols == []
        assert collected.items_seen == 0


# --- /protocols ---------------------------------------------------------------------------


def test_reconstructed_protocols() -> None:
    collected = defillama_protocols.parse_protocols(
        fixture("defillama", "protocols.reconstructed.json")
    )
    assert (collected.items_seen, collected.failed, collected.reports) == (3, 0, [])
    balancer, cream, enni = collected.protocols
    assert balancer.source == "defillama_protocols"
    assert (balancer.slug, balancer.name, balancer.defillama_id) == (
        "balancer-v1",
        "Balancer V1",
        "116",
    )
    assert balancer.parent == "balancer"
    assert (balancer.category, balancer.chains) == ("Dexs", ["ethereum"])
    assert balancer.url == "https://balancer.finance/"
    assert balancer.audits == 2
    assert balancer.audit_links == [
        "https://docs.balancer.fi/reference/contracts/security.html#audits"
    ]
    assert (balancer.audit_note, balancer.forked_from, balancer.oracles) == (None, [], [])
    assert balancer.listed_at is None
    assert balancer.tvl_usd == pytest.approx(12345678.9)
    assert cream.chains == ["ethereum", "bsc", "polygon"]  # "Binance" is BSC
    assert (cream.audits, cream.forked_from) == (3, ["Compound V2"])
    assert cream.oracles == ["Chainlink", "Band"]
    assert cream.parent == "cream-finance"
    assert enni.url is None  # the registry's " " placeholder
    assert enni.parent is None
    assert enni.listed_at == dt.datetime(2026, 4, 19, 19, 58, 33, tzinfo=dt.UTC)
    assert enni.oracles == ["Chainlink", "RedStone"]
    assert enni.audit_links == [
        "https://enni.ch/Hashlock-Audit.pdf",
        "https://enni.ch/Blockbite-Audit.pdf",
    ]


def test_a_protocol_without_a_slug_is_not_given_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=defillama_protocols.__name__):
        collected = defillama_protocols.parse_protocols(
            fixture("defillama", "protocols.docs-example.json")
        )
    assert (collected.items_seen, collected.failed, collected.protocols) == (1, 1, [])
    assert [r.getMessage() for r in caplog.records] == [
        "defillama_protocols: protocol #0 (Aave) skipped: no slug"
    ]


def test_oracles_from_every_field_and_odd_values(caplog: pytest.LogCaptureFixture) -> None:
    row = {
        "id": 7,
        "slug": "example",
        "name": "Example",
        "chains": ["Ethereum", "Example L9", "Other Chain X"],
        "audits": "unknown",
        "oracles": ["Chainlink"],
        "oraclesBreakdown": [
            {"name": "Chainlink", "type": "Primary", "proof": []},
            {"name": "RedStone", "type": "Fallback"},
            "junk",
        ],
        "oraclesByChain": {"Ethereum": ["Pyth", "Chainlink"]},
        "tvl": -5,
        "listedAt": "yesterday",
        "forkedFrom": ["Uniswap V2", "", None, "Uniswap V2"],
    }
    with caplog.at_level(logging.WARNING, logger=defillama_protocols.__name__):
        collected = defillama_protocols.parse_protocols(json.dumps([row, {"name": "x"}]).encode())
    [record] = collected.protocols
    assert record.oracles == ["Chainlink", "RedStone", "Pyth"]
    assert (record.defillama_id, record.audits, record.tvl_usd) == ("7", None, None)
    assert (record.listed_at, record.forked_from) == (None, ["Uniswap V2"])
    assert record.chains == ["ethereum"]
    assert collected.failed == 1
    lines = [r.getMessage() for r in caplog.records]
    # One line for the record without a slug, one line for every unknown chain name.
    assert len(lines) == 2
    assert "2 chain names" in lines[1]
    assert "'Example L9', 'Other Chain X'" in lines[1]


def test_protocols_format_errors() -> None:
    with pytest.raises(SourceFormatError, match=r"^defillama_protocols: the body is not JSON"):
        defillama_protocols.parse_protocols(b'[{"id": "1", "na')
    with pytest.raises(SourceFormatError, match="found a JSON object"):
        defillama_protocols.parse_protocols(b'{"protocols": []}')


@pytest.mark.anyio
async def test_collect_protocols() -> None:
    body = fixture("defillama", "protocols.reconstructed.json")
    fetch = MemoryFetch({defillama_protocols.INFO.url: body})
    collected = await defillama_protocols.ADAPTER.collect(
        fetch, defillama_protocols.INFO.url, since=dt.date(2030, 1, 1)
    )
    # ``since`` limits incidents, not the registry.
    assert [p.slug for p in collected.protocols] == ["balancer-v1", "cream-lending", "enni"]

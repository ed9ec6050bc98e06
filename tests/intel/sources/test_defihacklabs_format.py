"""The DeFiHackLabs README format, the incident ids and the loss wording."""

import csv
import datetime as dt
import math
from collections import defaultdict
from pathlib import Path

import pytest

from kamiyo.intel.sources import defihacklabs_format as fmt
from kamiyo.intel.sources.base import SourceFormatError
from kamiyo.intel.sources.defihacklabs_loss import parse_loss

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sources" / "defihacklabs"
INCIDENTS = Path(__file__).parents[3] / "data" / "defihacklabs" / "defihacklabs_incidents.csv"


def _readme() -> list[fmt.Section]:
    return fmt.parse_readme((FIXTURES / "README.excerpt.md").read_text("utf-8"), "README.md")


def _past_2024() -> list[fmt.Section]:
    text = (FIXTURES / "past_2024_README.excerpt.md").read_text("utf-8")
    return fmt.parse_readme(text, "past/2024/README.md")


def _csv_rows() -> list[dict[str, str]]:
    with INCIDENTS.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_main_readme_sections_recent_and_link_reference_variants() -> None:
    sections = _readme()
    assert [(s.day, s.protocol) for s in sections] == [
        (dt.date(2026, 8, 20), "FlashstakeV2"),
        (dt.date(2026, 8, 19), "AllbridgeCCTP"),
        (dt.date(2026, 8, 15), "FoxLpBondsPool"),
        (dt.date(2026, 8, 9), "USM"),
        (dt.date(2026, 8, 7), "Atomic"),
        (dt.date(2026, 1, 10), "FutureSwap"),
        (dt.date(2026, 1, 9), "Truebit"),
        (dt.date(2026, 1, 1), "PRXVT"),
    ]
    first = sections[0]
    assert first.document == "README.md"
    assert first.attack == "Mispriced reward pool, instant upfront reward extraction"
    assert first.loss_text == (
        "~0.5453 WETH drained (28.25% of reward pool reserve); attacker net profit ~0.4285 ETH"
    )
    assert first.poc_links == ("src/test/2026-08/FlashstakeV2_exp.sol",)
    assert first.poc_commands == ("src/test/2026-08/FlashstakeV2_exp.sol",)
    assert first.references == ()
    # Sections separated by "---", with "### Link reference" and a "./src/…" forge path.
    futureswap = sections[5]
    assert futureswap.attack == "Unit Mismatch"
    assert futureswap.loss_text == "433K USD"
    assert futureswap.poc_commands == ("src/test/2026-01/futureswap_exp.sol",)
    assert futureswap.references == ("https://x.com/nn0b0dyyy/status/2009922304927731717?s=20",)
    # The gas-report example after the last section is not part of it.
    assert sections[-1].references == ("https://x.com/CertiKAlert/status/2006685174587605315",)
    assert sections[-1].loss_text == "32.8 ETH"


def test_archive_sections_older_variants() -> None:
    sections = _past_2024()
    assert [s.protocol for s in sections] == [
        "Bizness",
        "Moonhacker",
        "SlurpyCoin",
        "BTC24H",
        "JHY",
        "RadiantCapital",
        "OrbitChain",
    ]
    moonhacker = sections[1]
    assert moonhacker.loss_text == "318.9 k"
    assert moonhacker.poc_links == ("src/test/2024-12/Moonhacker_exp.sol",)  # from ../../src
    radiant = sections[5]
    assert radiant.attack == "Loss of Precision"
    # "#### Link reference" with two links; "--match-contract" names the month's file.
    assert radiant.references == (
        "https://neptunemutual.com/blog/how-was-radiant-capital-exploited/",
        "https://twitter.com/BeosinAlert/status/1742389285926678784",
    )
    assert radiant.poc_commands == ("src/test/2024-01/RadiantCapital_exp.sol",)
    assert sections[-1].references == (
        "https://blog.solidityscan.com/orbit-chain-hack-analysis-b71c36a54a69",
    )


def test_the_main_readme_links_the_yearly_archives() -> None:
    text = (FIXTURES / "README.excerpt.md").read_text("utf-8")
    assert fmt.archive_paths(text) == ["past/2025/README.md", "past/2021/README.md"]


@pytest.mark.parametrize(
    ("heading", "protocol", "attack"),
    [
        ("### 20240924-MARA---price-manipulation", "MARA", "price manipulation"),
        (
            "### 20221230 - DFS - Insufficient validation + flashloan",
            "DFS",
            "Insufficient validation + flashloan",
        ),
        (
            "### 20210804 Popsicle - Repeated Reward Claim - Logic Flaw",
            "Popsicle",
            "Repeated Reward Claim - Logic Flaw",
        ),
        ("### 20220101 NoCause", "NoCause", None),
    ],
)
def test_heading_variants(heading: str, protocol: str, attack: str | None) -> None:
    (section,) = fmt.parse_readme(f"{heading}\n\n#### Lost: $1k\n", "past/2022/README.md")
    assert section.protocol == protocol
    assert section.attack == attack
    assert section.loss_text == "$1k"


def test_broken_poc_links_get_the_names_the_repository_uses() -> None:
    text = (
        "### 20250830 EverValueCoin - Arbitrage\n"
        "```sh\nforge test --contracts ./src/test/2025-08/EverValueCoin -vvv\n```\n"
        "#### Contract\n[EverValueCoin](../../src/test/2025-08/EverValueCoin)\n"
    )
    (section,) = fmt.parse_readme(text, "past/2025/README.md")
    assert fmt.poc_candidates(section) == [
        [
            "src/test/2025-08/EverValueCoin",
            "src/test/2025-08/EverValueCoin_exp.sol",
            "src/test/EverValueCoin",
        ]
    ]


def test_a_readme_without_sections_is_a_changed_layout() -> None:
    text = (FIXTURES / "README.excerpt.md").read_text("utf-8").replace("### 20", "### Incident 20")
    with pytest.raises(SourceFormatError, match=r"README\.md: no incident sections"):
        fmt.parse_readme(text, "README.md")


def test_repeats_of_one_day_and_name_are_numbered_in_list_order() -> None:
    text = "### 20260526 SKP Token - Backdoor\n---\n### 20260526 SKP Token - Rug pull\n"
    assert fmt.source_ids(fmt.parse_readme(text, "README.md")) == [
        "20260526_skp-token",
        "20260526_skp-token_2",
    ]


def test_source_ids_reproduce_every_bundled_id() -> None:
    """Every id of the bundled CSV (all 857 listed incidents) from its date and protocol; the
    three orphan PoCs (yyyymm ids) are not README sections and have no such id."""
    rows = [r for r in _csv_rows() if r["listed_in"]]
    sections = [
        fmt.Section(
            document=r["listed_in"],
            day=dt.date.fromisoformat(r["date"]),
            protocol=r["protocol"],
            attack=None,
            loss_text=None,
            poc_links=(),
            poc_commands=(),
            references=(),
        )
        for r in rows
    ]
    ids = fmt.source_ids(sections)
    assert len(rows) == 857
    assert sorted(ids) == sorted(r["incident_id"] for r in rows)
    # The CSV is sorted by id, the READMEs by date as listed: ids may differ only by the
    # numbering of repeats, which follows the README order (tested above).
    mismatched = [
        (r["incident_id"], i) for r, i in zip(rows, ids, strict=True) if r["incident_id"] != i
    ]
    assert mismatched == [
        ("20260526_skp-token_2", "20260526_skp-token"),
        ("20260526_skp-token", "20260526_skp-token_2"),
    ]


# --- loss wording -----------------------------------------------------------------------

# Where the reading here and the CSV's differ, and why: the CSV dropped a stated figure
# whenever a "+" or ">" marked it as a lower bound, although it kept ">200k USD(plus …)".
KNOWN_DISAGREEMENTS = {
    "500,000+ USD": ((500_000.0, "usd"), (None, None)),
    ">100K": ((100_000.0, "assumed_usd"), (None, None)),
}


def test_parse_loss_agrees_with_every_bundled_row() -> None:
    rows = [r for r in _csv_rows() if r["loss_text"]]
    disagreements = {}
    for row in rows:
        expected = (
            float(row["loss_usd"]) if row["loss_usd"] else None,
            row["loss_usd_basis"] or None,
        )
        got = parse_loss(row["loss_text"])
        same_amount = (got[0] is None and expected[0] is None) or (
            got[0] is not None and expected[0] is not None and math.isclose(got[0], expected[0])
        )
        if not (same_amount and got[1] == expected[1]):
            disagreements[row["loss_text"]] = (got, expected)
    assert len(rows) == 833
    assert disagreements == KNOWN_DISAGREEMENTS  # 831 of 833 agree


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("~$1.5M", (1_500_000.0, "usd")),
        ("~6,5M", (6_500_000.0, "assumed_usd")),  # a decimal comma
        ("$.8 million", (800_000.0, "usd")),
        ("819 BNB (~224k$)", (224_000.0, "usd")),
        ("~112,976.12 USDC (~$118.7K reported)", (118_700.0, "usd")),  # dollars first
        ("53.2445 WBTC and 99,976.29 USDT", (99_976.29, "stablecoin")),
        ("~1K $DAI", (1_000.0, "stablecoin")),
        ("~65K", (65_000.0, "assumed_usd")),
        ("~52 BNB", (None, None)),
        ("~ 95.5 K (1.14015390 WBTC)", (None, None)),  # a bare figure beside a token
        ("996B (CGT token)", (None, None)),
        ("0 (Disclosure only; no exploit occurred)", (None, None)),
        ("Unclear", (None, None)),
        (None, (None, None)),
    ],
)
def test_parse_loss_forms(text: str | None, expected: tuple[float | None, str | None]) -> None:
    assert parse_loss(text) == expected


def test_every_csv_id_is_unique_per_day_and_slug() -> None:
    by_base: defaultdict[str, list[str]] = defaultdict(list)
    for row in _csv_rows():
        if row["listed_in"]:
            by_base[f"{row['date'].replace('-', '')}_{fmt.slug(row['protocol'])}"].append(
                row["incident_id"]
            )
    for base, ids in by_base.items():
        assert sorted(ids) == sorted([base] + [f"{base}_{n}" for n in range(2, len(ids) + 1)])

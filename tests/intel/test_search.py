import datetime as dt

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.intel import SearchQuery, SortOrder
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import AttackType

pytestmark = pytest.mark.anyio


async def _search(session: AsyncSession, **fields: object) -> intel.SearchResult:
    return await intel.search_incidents(session, SearchQuery.model_validate(fields))


async def test_protocol_name_finds_the_incident(session: AsyncSession) -> None:
    result = await _search(session, query="ronin")
    assert [i.id for i in result.incidents] == ["20220329_ronin-network"]
    ronin = result.incidents[0]
    assert ronin.loss_usd == 624_000_000
    assert ronin.chains == ["ethereum"]
    assert ronin.attack_type is AttackType.BRIDGE
    assert "Rekt News" in ronin.sources


async def test_camel_case_protocol_names_match_their_words(session: AsyncSession) -> None:
    euler = await _search(
        session, query="euler", chain="ethereum", since="2023-01-01", min_loss_usd=1_000_000
    )
    assert [i.id for i in euler.incidents] == ["20230313_eulerfinance"]
    finance = await _search(session, query="finance", limit=200)
    assert "20230313_eulerfinance" in {i.id for i in finance.incidents}


async def test_flash_loan_on_bsc_matches_both_spellings(session: AsyncSession) -> None:
    result = await _search(session, query="flash loan", chain="bsc", limit=200)
    assert result.count > 10
    raws = {(i.attack_type_raw or "").lower() for i in result.incidents}
    assert any("flashloan" in r for r in raws)  # one word in the source
    assert "flash loan" in raws  # two words (Ploutoz, JulSwap)
    assert all("bsc" in i.chains for i in result.incidents)


async def test_filters_are_all_applied(session: AsyncSession) -> None:
    since, until = dt.date(2022, 1, 1), dt.date(2022, 12, 31)
    result = await _search(
        session, chain="ethereum", since=since, until=until, min_loss_usd=1e6, limit=1000
    )
    assert result.count > 5
    for incident in result.incidents:
        assert since <= incident.date <= until
        assert "ethereum" in incident.chains
        assert incident.loss_usd is not None
        assert incident.loss_usd >= 1e6


async def test_attack_type_filter(session: AsyncSession) -> None:
    result = await _search(session, attack_type="reentrancy", limit=1000)
    assert result.count > 20
    assert {i.attack_type for i in result.incidents} == {AttackType.REENTRANCY}


async def test_address_filter_finds_every_incident_of_a_reused_attacker(
    session: AsyncSession,
) -> None:
    # An attacker EOA that the data lists in more than one incident.
    result = await _search(session, address="0x2419432344B0B892E592B2601B98EAE702BA360E", limit=50)
    assert "20260819_allbridgecctp" in {i.id for i in result.incidents}


async def test_sort_by_loss_puts_the_largest_first_and_unknown_losses_last(
    session: AsyncSession,
) -> None:
    result = await _search(session, sort="loss", limit=1000)
    losses = [i.loss_usd for i in result.incidents]
    known = [x for x in losses if x is not None]
    assert known == sorted(known, reverse=True)
    assert losses[: len(known)] == known  # every None comes after every number
    assert result.incidents[0].id == "20250221_bybit"  # ~$1.5B, the largest in the data


async def test_default_order_without_a_query_is_most_recent_first(
    session: AsyncSession,
) -> None:
    result = await _search(session, limit=50)
    dates = [i.date for i in result.incidents]
    assert dates == sorted(dates, reverse=True)


async def test_limit_cap_and_truncation(session: AsyncSession) -> None:
    query = SearchQuery(chain="bsc", limit=100)
    capped = await intel.search_incidents(session, query, intel.Scope(max_results=7))
    assert capped.count == 7
    assert capped.limit == 7
    assert capped.truncated is True
    everything = await _search(session, query="ronin", limit=100)
    assert everything.truncated is False


async def test_hide_after_drops_newer_incidents(session: AsyncSession) -> None:
    cutoff = dt.date(2024, 1, 1)
    result = await intel.search_incidents(
        session, SearchQuery(limit=20), intel.Scope(hide_after=cutoff)
    )
    assert result.incidents
    assert all(i.date <= cutoff for i in result.incidents)


async def test_no_match_is_an_empty_result(session: AsyncSession) -> None:
    result = await _search(session, query="zzqqxxnotaprotocol")
    assert result.incidents == []
    assert result.truncated is False


# Strings that must never reach FTS or SQL as syntax. Each one gives results or a clear error.
HOSTILE_QUERIES = [
    '"',
    '"euler',
    "euler*",
    "*",
    "OR",
    "euler OR ronin",
    "NEAR(euler ronin)",
    "NEAR(",
    "euler AND NOT ronin",
    "protocol:euler",
    "'; DROP TABLE incidents; --",
    "euler\x00",
    "\x00",
    "🚀 euler 🚀",
    "🚀",
    "ünïcödé",
    "(((",
    "a & b | !c",
    "euler:*",
    "\\",
    "%_%",
]


@pytest.mark.parametrize("text", HOSTILE_QUERIES)
async def test_hostile_queries_give_results_or_a_validation_error(
    session: AsyncSession, text: str
) -> None:
    if "\x00" in text:  # what PostgreSQL cannot store is refused on every backend
        with pytest.raises(ValidationError, match="must not contain a NUL character"):
            SearchQuery(query=text)
        return
    if not query_terms(text):
        with pytest.raises(ValidationError, match=r"no letters or digits|too common"):
            SearchQuery(query=text)
        return
    result = await intel.search_incidents(session, SearchQuery(query=text))
    assert result.count == len(result.incidents)


async def test_quotes_and_operators_are_plain_words(session: AsyncSession) -> None:
    plain = await _search(session, query="euler")
    for text in ('"euler', "euler*", "🚀 euler 🚀", "(euler)", "euler:*"):
        assert (await _search(session, query=text)).incidents == plain.incidents, text


def test_a_query_of_only_common_words_is_refused_clearly() -> None:
    with pytest.raises(ValidationError, match="only words too common"):
        SearchQuery(query="the of and")


def test_a_ten_kilobyte_query_is_refused_clearly() -> None:
    with pytest.raises(ValidationError, match="at most 256 characters"):
        SearchQuery(query="euler " * 2000)


def test_bad_filters_are_refused_clearly() -> None:
    with pytest.raises(ValidationError, match="not a chain name"):
        SearchQuery(chain="no such chain!")
    with pytest.raises(ValidationError, match="not an address"):
        SearchQuery(address="0x123")
    with pytest.raises(ValidationError, match="since must not be after until"):
        SearchQuery(since="2024-01-02", until="2024-01-01")
    with pytest.raises(ValidationError, match="attack_type"):
        SearchQuery(attack_type="space lasers")
    with pytest.raises(ValidationError, match="sort=relevance needs a query"):
        SearchQuery(sort=SortOrder.RELEVANCE)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        SearchQuery(min_loss_usd=-1)


def test_chain_aliases_normalise() -> None:
    assert SearchQuery(chain="BNB Chain").chain == "bsc"
    assert SearchQuery(chain="ETH").chain == "ethereum"


def test_an_unknown_chain_is_refused_not_searched() -> None:
    # It used to be accepted as a slug and matched nothing, silently.
    with pytest.raises(ValidationError, match="'foochain' is not a chain name KAMIYO knows") as e:
        SearchQuery(query="ronin", chain="foochain")
    assert "ethereum" in str(e.value)
    assert "aliases such as eth" in str(e.value)


async def test_get_incident_in_full(session: AsyncSession) -> None:
    incident = await intel.get_incident(session, "20260819_allbridgecctp")
    assert incident is not None
    assert incident.protocol == "AllbridgeCCTP"
    assert incident.chains == ["base"]
    assert incident.loss_usd == pytest.approx(190155.98)
    assert incident.loss_usd_basis == "stablecoin"
    assert incident.status == "confirmed"
    roles = {(a.role.value, a.address) for a in incident.addresses}
    assert ("attacker", "0x2419432344b0b892e592b2601b98eae702ba360e") in roles
    assert [t.hash for t in incident.transactions] == [
        "0x9f906fcd8fceaa6745e8d1c004861dcfa9b5e6a893fe1e8c5d0013a4e982e6a8"
    ]
    assert any(r.url.endswith("AllbridgeCCTP_exp.sol") for r in incident.references)
    assert [p.source for p in incident.provenance] == ["defihacklabs"]
    assert incident.provenance[0].ingested_at.tzinfo is not None


async def test_get_unknown_incident_is_none(session: AsyncSession) -> None:
    assert await intel.get_incident(session, "19990101_nothing") is None

import datetime as dt

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.db.tables import IncidentAddress, IncidentName, IncidentTransaction
from kamiyo.intel import SearchQuery, SortOrder
from kamiyo.intel.names import name_key
from kamiyo.intel.risk import ProtocolRiskQuery, assess_protocol
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import AttackType

pytestmark = pytest.mark.anyio


async def _search(session: AsyncSession, **fields: object) -> intel.SearchResult:
    return await intel.search_incidents(session, SearchQuery.model_validate(fields))


async def test_protocol_name_finds_the_incident(session: AsyncSession) -> None:
    result = await _search(session, query="ronin")
    ronin = next(i for i in result.incidents if i.date.year == 2022)
    assert ronin.loss_usd == pytest.approx(624_000_000, rel=0.01)
    assert "ethereum" in ronin.chains
    assert {"defihacklabs", "notable"} <= {s.source for s in ronin.sources}
    assert "Rekt News" in ronin.firms


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
    assert known[0] >= 1e9  # Bybit's ~$1.5B, LuBian's bitcoin: the largest in the data


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
    assert [s.source for s in incident.sources] == ["defihacklabs"]
    assert incident.sources[0].source_id == "20260819_allbridgecctp"


async def test_get_incident_without_transactions_or_aliases(session: AsyncSession) -> None:
    bare = select(IncidentRow.id).where(
        ~IncidentRow.pk.in_(select(IncidentTransaction.incident_pk)),
        ~IncidentRow.pk.in_(select(IncidentAddress.incident_pk)),
    )
    incident_id = await session.scalar(bare.order_by(IncidentRow.pk).limit(1))
    assert incident_id is not None
    incident = await intel.get_incident(session, incident_id)
    assert incident is not None
    assert incident.transactions == []
    assert incident.addresses == []
    assert incident.protocol not in incident.aliases


async def test_get_unknown_incident_is_none(session: AsyncSession) -> None:
    assert await intel.get_incident(session, "19990101_nothing") is None


# --- found by any name ---------------------------------------------------------------------


async def _keys(session: AsyncSession, result: intel.SearchResult) -> list[set[str]]:
    """The name keys each listed incident goes by, in the result's order."""
    ids = [i.id for i in result.incidents]
    rows = await session.execute(
        select(IncidentRow.id, IncidentName.key)
        .join(IncidentName, IncidentName.incident_pk == IncidentRow.pk)
        .where(IncidentRow.id.in_(ids))
    )
    keys: dict[str, set[str]] = {i: set() for i in ids}
    for incident_id, key in rows:
        keys[incident_id].add(key)
    return [keys[i] for i in ids]


def _leads(flags: list[bool]) -> bool:
    """Some incidents are flagged, and every flagged one comes before every other one."""
    return bool(flags) and flags[0] and flags == sorted(flags, reverse=True)


@pytest.mark.parametrize(
    "text",
    [
        "curve finance",
        "Curve",
        "CurveFinance",
        "mango markets",
        "wormhole",
        "wazirx",
        "cetus",
        "munchables",
        "Ronin Network",
        "ronin",
        "Axie Infinity",
        "euler finance",
        "Euler",
        "Euler V1",
    ],
)
async def test_a_protocol_is_found_by_its_names_and_listed_first(
    session: AsyncSession, text: str
) -> None:
    result = await _search(session, query=text, limit=50)
    key = name_key(text)
    assert _leads([key in keys for keys in await _keys(session, result)]), text


async def test_every_name_of_ronin_finds_the_2022_incident(session: AsyncSession) -> None:
    found = []
    for text in ("Ronin Network", "ronin", "Axie Infinity", "axie"):
        result = await _search(session, query=text)
        found.append({i.id for i in result.incidents if i.date.year == 2022})
    assert len(found[0]) == 1
    assert all(ids == found[0] for ids in found)


async def test_euler_by_its_full_name_and_its_short_one(session: AsyncSession) -> None:
    long = await _search(session, query="euler finance")
    short = await _search(session, query="Euler")
    assert long.incidents[0] == short.incidents[0]
    assert long.incidents[0].date == dt.date(2023, 3, 13)


async def test_an_exact_name_ranks_above_names_it_begins(session: AsyncSession) -> None:
    result = await _search(session, query="curve", limit=100)
    keys = await _keys(session, result)
    exact = [n for n, k in enumerate(keys) if "curve" in k]
    longer = [n for n, k in enumerate(keys) if "curveburner" in k]
    assert exact
    assert longer  # CurveBurner still matches, as a name beginning with the word
    assert max(exact) < min(longer)


async def test_a_name_prefix_does_not_match_an_unrelated_word(session: AsyncSession) -> None:
    # The stemmer cuts "axie" to "axi", a prefix of "axioma"; names are matched unstemmed.
    result = await _search(session, query="axie", limit=100)
    assert not any("axioma" in keys for keys in await _keys(session, result))
    assert any("axieinfinity" in keys for keys in await _keys(session, result))
    assert (await _search(session, query="axioma")).count >= 1


async def test_attack_and_description_words_are_still_stemmed(session: AsyncSession) -> None:
    manipulated = await _search(session, query="manipulated", limit=1000)
    manipulation = await _search(session, query="manipulation", limit=1000)
    assert manipulated.count > 10
    assert {i.id for i in manipulated.incidents} == {i.id for i in manipulation.incidents}


async def test_filters_apply_to_exact_name_matches(session: AsyncSession) -> None:
    until = await _search(session, query="ronin", until="2023-01-01")
    assert until.incidents
    assert all(i.date.year == 2022 for i in until.incidents)
    on_bsc = await _search(session, query="curve", chain="bsc", limit=100)
    assert all("bsc" in i.chains for i in on_bsc.incidents)
    big = await _search(session, query="curve", min_loss_usd=1e9)
    assert big.incidents == []


@pytest.mark.parametrize("sort", ["relevance", "recent", "loss"])
async def test_limit_and_truncation_are_exact_across_kinds_of_match(
    session: AsyncSession, sort: str
) -> None:
    everything = await _search(session, query="curve", sort=sort, limit=1000)
    full = [i.id for i in everything.incidents]
    assert len(full) > 3
    assert not everything.truncated
    for limit in range(1, len(full) + 1):
        page = await _search(session, query="curve", sort=sort, limit=limit)
        assert [i.id for i in page.incidents] == full[:limit]
        assert page.truncated is (limit < len(full))
    if sort == "recent":
        dates = [i.date for i in everything.incidents]
        assert dates == sorted(dates, reverse=True)
    if sort == "loss":
        losses = [i.loss_usd for i in everything.incidents if i.loss_usd is not None]
        assert losses == sorted(losses, reverse=True)


async def test_every_sort_finds_the_same_incidents(session: AsyncSession) -> None:
    found = [
        {i.id for i in (await _search(session, query="curve", sort=s, limit=1000)).incidents}
        for s in ("relevance", "recent", "loss")
    ]
    assert found[0] == found[1] == found[2]


# --- did you mean --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"), [("eulr", "euler"), ("uniwsap", "uniswap"), ("wromhole", "wormhole")]
)
async def test_a_near_miss_answers_with_the_names_meant(
    session: AsyncSession, typed: str, meant: str
) -> None:
    result = await _search(session, query=typed)
    assert result.incidents == []
    assert 1 <= len(result.suggestions) <= 5
    assert name_key(result.suggestions[0]).startswith(meant)
    assert result.note is not None
    assert result.note.startswith(f"No incident matches '{typed}'. Did you mean: ")
    assert result.suggestions[0] in result.note
    # The suggestion is a name that finds the protocol.
    again = await _search(session, query=result.suggestions[0])
    assert again.incidents


async def test_a_prefix_typo_still_finds_by_prefix(session: AsyncSession) -> None:
    result = await _search(session, query="wormhol")
    assert result.incidents[0].protocol == "Wormhole"
    assert result.suggestions == []


async def test_suggestions_only_when_nothing_matches(session: AsyncSession) -> None:
    found = await _search(session, query="euler")
    assert found.incidents
    assert found.suggestions == []
    assert found.note is None
    nothing = await _search(session, query="zzqqxxnotaprotocol")
    assert nothing.suggestions == []
    assert nothing.note is None


async def test_a_known_name_hidden_by_filters_says_so(session: AsyncSession) -> None:
    result = await _search(session, query="euler", chain="bsc")
    assert result.incidents == []
    assert result.suggestions == []
    assert result.note is not None
    assert "with these filters" in result.note
    assert "Relax chain" in result.note


# --- attack words ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["private key", "hot wallet", "multisig", "key compromise"])
async def test_key_words_find_key_compromises_first(session: AsyncSession, text: str) -> None:
    typed = await _search(session, attack_type="key_compromise", limit=1000)
    assert typed.count > 10
    result = await _search(session, query=text, limit=1000)
    kinds = [i.attack_type is AttackType.KEY_COMPROMISE for i in result.incidents]
    assert _leads(kinds)
    assert {i.id for i in typed.incidents} <= {i.id for i in result.incidents}
    # Ronin's 2022 drain is a key compromise, typed so from the notable incidents' record.
    assert any(
        "axieinfinity" in keys and incident.attack_type is AttackType.KEY_COMPROMISE
        for keys, incident in zip(await _keys(session, result), result.incidents, strict=True)
    )


async def test_a_query_that_only_mentions_an_attack_type_keeps_every_word(
    session: AsyncSession,
) -> None:
    euler = {i.id for i in (await _search(session, query="euler", limit=1000)).incidents}
    both = await _search(session, query="euler flash loan", limit=1000)
    assert {i.id for i in both.incidents} <= euler


# --- protocol names only (protocol history, risk) -------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"), [("aave v3", "aave"), ("Uniswap", "uniswap"), ("euler finance", "euler")]
)
async def test_protocol_only_resolves_names(session: AsyncSession, text: str, key: str) -> None:
    result = await intel.search_incidents(
        session, SearchQuery(query=text, sort="recent", limit=100), protocol_only=True
    )
    assert any(key in keys for keys in await _keys(session, result))
    history = await assess_protocol(session, ProtocolRiskQuery(protocol_name=text))
    assert history.incident_count >= 1


async def test_protocol_only_ignores_attack_words(session: AsyncSession) -> None:
    result = await intel.search_incidents(
        session, SearchQuery(query="price manipulation", limit=100), protocol_only=True
    )
    assert result.incidents == []
    assert (await _search(session, query="price manipulation")).incidents

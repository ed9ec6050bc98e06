"""A search by relevance ranks a bounded set of text matches: the most recently recorded."""

from collections.abc import Iterator

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.intel import SearchQuery, fulltext, search_plan
from kamiyo.intel.text import query_terms

pytestmark = pytest.mark.anyio

BOUND = 7


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``TEXT_CANDIDATES`` small enough for the bundled data (statements are built anew)."""
    monkeypatch.setattr(search_plan, "TEXT_CANDIDATES", BOUND)
    search_plan.statements.cache_clear()
    yield
    search_plan.statements.cache_clear()


async def _text_matches(session: AsyncSession, words: str) -> list[str]:
    """The ids of the incidents whose text matches ``words``, most recently recorded first."""
    dialect = session.get_bind().dialect.name
    match = fulltext.query_text(dialect, query_terms(words))
    pks = fulltext.matching_pks(dialect, bindparam("match"))
    stmt = select(IncidentRow.id).where(IncidentRow.pk.in_(pks)).order_by(IncidentRow.pk.desc())
    return list(await session.scalars(stmt, {"match": match}))


async def test_a_broad_search_ranks_only_the_newest_matches(
    session: AsyncSession, small_bound: None
) -> None:
    # "stolen" names no protocol and no attack type: the text stage alone answers.
    matches = await _text_matches(session, "stolen")
    assert len(matches) > BOUND
    result = await intel.search_incidents(session, SearchQuery(query="stolen", limit=50))
    assert result.ranked_newest == BOUND
    assert sorted(i.id for i in result.incidents) == sorted(matches[:BOUND])
    assert not result.truncated  # the bound is all there is to page through


async def test_a_narrow_search_says_nothing_of_a_bound(
    session: AsyncSession, small_bound: None
) -> None:
    matches = await _text_matches(session, "euler")
    assert 0 < len(matches) < BOUND
    result = await intel.search_incidents(session, SearchQuery(query="euler"))
    assert result.ranked_newest is None
    assert {i.id for i in result.incidents} == set(matches)


async def test_the_default_bound_leaves_the_bundled_data_whole(session: AsyncSession) -> None:
    result = await intel.search_incidents(session, SearchQuery(query="stolen", limit=1000))
    assert result.ranked_newest is None
    assert result.count == len(await _text_matches(session, "stolen"))

"""Paging through a search with next_cursor: the pages make up the longer answer, in order."""

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.intel import SearchQuery, pages

pytestmark = pytest.mark.anyio


async def _search(session: AsyncSession, **fields: object) -> intel.SearchResult:
    return await intel.search_incidents(session, SearchQuery.model_validate(fields))


@pytest.mark.parametrize(
    "search",
    [{"query": "flash loan"}, {"chain": "ethereum", "sort": "loss"}, {"since": "2022-01-01"}],
)
async def test_pages_make_up_the_longer_answer(
    session: AsyncSession, search: dict[str, object]
) -> None:
    whole = await _search(session, **search, limit=15)
    first = await _search(session, **search, limit=5)
    assert first.truncated
    assert first.next_cursor is not None
    second = await _search(session, **search, limit=5, cursor=first.next_cursor)
    assert second.next_cursor is not None
    third = await _search(session, **search, limit=5, cursor=second.next_cursor)
    paged = [i.id for page in (first, second, third) for i in page.incidents]
    assert paged == [i.id for i in whole.incidents]


async def test_the_last_page_has_no_cursor(session: AsyncSession) -> None:
    found = await _search(session, query="euler", chain="ethereum", since="2023-01-01")
    assert not found.truncated
    assert found.next_cursor is None


async def test_a_cursor_of_another_search_or_a_forged_one_is_refused(
    session: AsyncSession,
) -> None:
    first = await _search(session, query="flash loan", limit=5)
    assert first.next_cursor is not None
    with pytest.raises(ValidationError, match="belongs to another search"):
        SearchQuery(query="reentrancy", cursor=first.next_cursor)
    with pytest.raises(ValidationError, match="not one this server gave"):
        SearchQuery(query="flash loan", cursor="%%%")
    deep = pages.encode(pages.MAX_OFFSET + 1, SearchQuery(query="flash loan").digest)
    with pytest.raises(ValidationError, match="narrow the search"):
        SearchQuery(query="flash loan", cursor=deep)
    # The page's size is not part of the search: a page may be larger than the one before.
    assert SearchQuery(query="flash loan", limit=20, cursor=first.next_cursor).offset == 5

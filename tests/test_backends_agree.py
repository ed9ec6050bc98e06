"""SQLite and PostgreSQL give the same answers to the same questions."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kamiyo import intel
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.runtime import Runtime, open_runtime
from tests.conftest import PostgresDatabases, new_database_url

pytestmark = pytest.mark.anyio

QUERIES = [
    {"query": "ronin"},
    {"query": "flash loan", "chain": "bsc", "limit": 1000},
    {"query": "euler", "chain": "ethereum", "since": "2023-01-01", "min_loss_usd": 1e6},
    {"query": "reentrancy", "sort": "loss", "limit": 1000},
    {"query": "oracle price", "sort": "recent", "limit": 1000},
    {"query": "finance", "limit": 1000},
    {"chain": "arbitrum", "limit": 1000},
    {"since": "2024-01-01", "until": "2024-06-30", "limit": 1000},
    {"sort": "loss", "limit": 1000},
    {"attack_type": "access_control", "limit": 1000},
    {"address": "0x2419432344b0b892e592b2601b98eae702ba360e"},
]


@pytest.fixture(scope="module")
async def both(
    tmp_path_factory: pytest.TempPathFactory, postgres_databases: PostgresDatabases
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    folder: Path = tmp_path_factory.mktemp("agree")
    sqlite_url = await new_database_url("sqlite", folder, postgres_databases)
    postgres_url = await new_database_url("postgresql", folder, postgres_databases)
    async with (
        open_runtime(
            Settings(database=DatabaseSettings(url=sqlite_url), _env_file=None), upgrade=True
        ) as lite,
        open_runtime(
            Settings(database=DatabaseSettings(url=postgres_url), _env_file=None), upgrade=True
        ) as pg,
    ):
        yield lite, pg


@pytest.mark.parametrize("fields", QUERIES, ids=[str(q) for q in QUERIES])
async def test_search_agrees(both: tuple[Runtime, Runtime], fields: dict[str, object]) -> None:
    query = intel.SearchQuery.model_validate(fields)
    results = []
    for runtime in both:
        async with runtime.sessions() as session:
            results.append(await intel.search_incidents(session, query))
    lite, pg = results
    assert lite.count > 0
    if query.effective_sort is intel.SortOrder.RELEVANCE:
        # bm25 and ts_rank weigh differently: the same incidents, not always in the same order.
        assert {i.id for i in lite.incidents} == {i.id for i in pg.incidents}
        assert sorted(lite.incidents, key=lambda i: i.id) == sorted(
            pg.incidents, key=lambda i: i.id
        )
    else:
        assert lite.incidents == pg.incidents


@pytest.mark.parametrize("group_by", list(intel.StatsGroup))
async def test_stats_agree(both: tuple[Runtime, Runtime], group_by: intel.StatsGroup) -> None:
    query = intel.StatsQuery(group_by=group_by)
    answers = []
    for runtime in both:
        async with runtime.sessions() as session:
            answers.append(await intel.incident_stats(session, query))
    lite, pg = answers
    assert [(r.key, r.incidents, r.incidents_with_loss) for r in lite.rows] == [
        (r.key, r.incidents, r.incidents_with_loss) for r in pg.rows
    ]
    for a, b in zip(lite.rows, pg.rows, strict=True):
        assert a.total_loss_usd == pytest.approx(b.total_loss_usd)


async def test_get_agrees(both: tuple[Runtime, Runtime]) -> None:
    incidents = []
    for runtime in both:
        async with runtime.sessions() as session:
            incidents.append(await intel.get_incident(session, "20230313_eulerfinance"))
    lite, pg = incidents
    assert lite is not None
    assert pg is not None
    assert lite.model_dump() == pg.model_dump()

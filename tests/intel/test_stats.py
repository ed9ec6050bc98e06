import datetime as dt

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.intel import StatsGroup, StatsQuery
from kamiyo.intel.vocabulary import AttackType

pytestmark = pytest.mark.anyio


async def _incidents(session: AsyncSession) -> list[intel.IncidentSummary]:
    """Every incident as a search lists it: the totals below are recomputed from these."""
    listed = await intel.search_incidents(session, intel.SearchQuery(limit=1000))
    rest = await intel.search_incidents(
        session, intel.SearchQuery(limit=1000, until=listed.incidents[-1].date)
    )
    found = {i.id: i for i in [*listed.incidents, *rest.incidents]}
    assert not rest.truncated
    return list(found.values())


async def test_stats_by_year_add_up_to_the_dataset(session: AsyncSession) -> None:
    incidents = await _incidents(session)
    stats = await intel.incident_stats(session, StatsQuery(group_by=StatsGroup.YEAR))
    assert stats.incidents == len(incidents) > 860
    assert sum(r.incidents for r in stats.rows) == stats.incidents
    # Nominal token values are shown on their incidents but never summed.
    expected_loss = sum(i.loss_usd or 0 for i in incidents if i.loss_usd_basis != "nominal")
    assert stats.total_loss_usd == pytest.approx(expected_loss)
    assert sum(r.total_loss_usd for r in stats.rows) == pytest.approx(expected_loss)
    by_year = {r.key: r.incidents for r in stats.rows}
    assert by_year["2022"] == sum(1 for i in incidents if i.date.year == 2022)
    assert [r.key for r in stats.rows] == sorted(by_year)


async def test_stats_by_month_use_year_month_keys(session: AsyncSession) -> None:
    stats = await intel.incident_stats(
        session,
        StatsQuery(
            group_by=StatsGroup.MONTH, since=dt.date(2023, 3, 1), until=dt.date(2023, 3, 31)
        ),
    )
    assert [r.key for r in stats.rows] == ["2023-03"]
    euler_month = stats.rows[0]
    assert euler_month.total_loss_usd >= 200_000_000


async def test_stats_by_chain_count_multi_chain_incidents_per_chain(
    session: AsyncSession,
) -> None:
    stats = await intel.incident_stats(session, StatsQuery(group_by=StatsGroup.CHAIN))
    counts = {r.key: r.incidents for r in stats.rows}
    expected: dict[str, int] = {}
    for record in await _incidents(session):
        for chain in record.chains:
            expected[chain] = expected.get(chain, 0) + 1
    assert counts == expected
    assert stats.note is not None
    # Ordered by total loss, largest first.
    losses = [r.total_loss_usd for r in stats.rows]
    assert losses == sorted(losses, reverse=True)


async def test_stats_by_attack_type_with_a_chain_filter(session: AsyncSession) -> None:
    stats = await intel.incident_stats(
        session, StatsQuery(group_by=StatsGroup.ATTACK_TYPE, chain="bsc")
    )
    bsc = sum(1 for r in await _incidents(session) if "bsc" in r.chains)
    assert stats.incidents == bsc
    assert sum(r.incidents for r in stats.rows) == bsc
    assert {r.key for r in stats.rows} <= {t.value for t in AttackType}


async def test_stats_of_nothing_are_zero(session: AsyncSession) -> None:
    stats = await intel.incident_stats(
        session, StatsQuery(since=dt.date(1990, 1, 1), until=dt.date(1990, 12, 31))
    )
    assert stats.rows == []
    assert stats.incidents == 0
    assert stats.total_loss_usd == 0


def test_stats_for_an_unknown_chain_are_refused() -> None:
    with pytest.raises(ValidationError, match="'foo' is not a chain name KAMIYO knows"):
        StatsQuery(chain="foo")


async def test_a_nominal_figure_is_shown_but_not_summed(session: AsyncSession) -> None:
    beauty = await intel.get_incident(session, "20180422_beauty-chain")
    assert beauty is not None
    assert (beauty.loss_usd, beauty.loss_usd_basis) == (900_000_000, "nominal")
    year = await intel.incident_stats(
        session, StatsQuery(since=dt.date(2018, 4, 22), until=dt.date(2018, 4, 22))
    )
    assert year.incidents == 1
    assert year.total_loss_usd == 0


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (dt.date(2022, 2, 10), dt.date(2023, 5, 20)),  # partial months at both ends
        (dt.date(2023, 3, 5), dt.date(2023, 3, 25)),  # within one month
        (None, dt.date(2021, 12, 31)),  # whole months only
        (dt.date(2024, 7, 2), None),
    ],
)
async def test_stats_over_any_date_range_count_the_incidents_in_it(
    session: AsyncSession, since: dt.date | None, until: dt.date | None
) -> None:
    """Whole months come from the monthly totals, the ends of the range from the daily ones."""
    query = StatsQuery(group_by=StatsGroup.MONTH, since=since, until=until)
    stats = await intel.incident_stats(session, query)
    inside = [
        i
        for i in await _incidents(session)
        if (since is None or i.date >= since) and (until is None or i.date <= until)
    ]
    expected: dict[str, int] = {}
    for incident in inside:
        key = f"{incident.date:%Y-%m}"
        expected[key] = expected.get(key, 0) + 1
    assert {r.key: r.incidents for r in stats.rows} == expected
    assert stats.incidents == len(inside) > 0
    by_chain = await intel.incident_stats(
        session, StatsQuery(group_by=StatsGroup.CHAIN, since=since, until=until, chain="bsc")
    )
    assert by_chain.incidents == sum(1 for i in inside if "bsc" in i.chains)

"""The pre-aggregated totals and the chain rows' copies follow every write to incidents."""

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.db.stats import IncidentDayStats, IncidentMonthStats
from kamiyo.db.tables import Incident, IncidentChain
from kamiyo.intel import corrections
from kamiyo.intel.stats import ALL_CHAINS
from tests.intel.test_store import ingest, report

pytestmark = pytest.mark.anyio


@pytest.fixture
def session(migrated_session: AsyncSession) -> AsyncSession:
    return migrated_session


async def recomputed(session: AsyncSession) -> dict[tuple[str, dt.date, str], tuple[int, int]]:
    """The totals' incident and with-loss counts, counted again from the incidents."""
    found: dict[tuple[str, dt.date, str], tuple[int, int]] = {}
    for incident in await session.scalars(select(Incident)):
        counted = incident.loss_usd is not None and incident.loss_usd_basis != "nominal"
        for chain in (ALL_CHAINS, *incident.chain_list):
            key = (chain, incident.date, incident.attack_type)
            n, with_loss = found.get(key, (0, 0))
            found[key] = (n + 1, with_loss + counted)
    return found


async def stored(session: AsyncSession) -> dict[tuple[str, dt.date, str], tuple[int, int]]:
    rows = await session.scalars(select(IncidentDayStats))
    return {(r.chain, r.day, r.attack_type): (r.incidents, r.with_loss) for r in rows}


async def assert_current(session: AsyncSession) -> None:
    days = await recomputed(session)
    assert await stored(session) == days
    months: dict[tuple[str, dt.date, str], tuple[int, int]] = {}
    for (chain, day, attack_type), (n, with_loss) in days.items():
        key = (chain, day.replace(day=1), attack_type)
        old_n, old_with_loss = months.get(key, (0, 0))
        months[key] = (old_n + n, old_with_loss + with_loss)
    rows = await session.scalars(select(IncidentMonthStats))
    assert {(r.chain, r.month, r.attack_type): (r.incidents, r.with_loss) for r in rows} == months
    # incident_chains' copies of date and loss agree with their incidents.
    pairs = await session.execute(
        select(IncidentChain.date, Incident.date, IncidentChain.loss_usd, Incident.loss_usd).join(
            Incident, Incident.pk == IncidentChain.incident_pk
        )
    )
    for chain_date, date, chain_loss, loss in pairs:
        assert (chain_date, chain_loss) == (date, loss)


async def test_totals_follow_ingests_updates_splits_and_merges(session: AsyncSession) -> None:
    other = report(
        source="beta", source_id="b1", date=dt.date(2025, 1, 2), chains=["bsc"], transactions=[]
    )
    await ingest(session, [report(), other])
    await assert_current(session)
    # A changed report moves its incident to another day, loss and chain.
    moved = report(date=dt.date(2024, 6, 1), loss_usd=5_000_000, loss_text="$5M", chains=["base"])
    await ingest(session, [moved])
    await assert_current(session)
    new_id = await corrections.split(session, "20250101_testprotocol", "beta", "b1")
    await assert_current(session)
    stats = await intel.incident_stats(session, intel.StatsQuery())
    assert stats.incidents == 2
    await corrections.merge(session, "20250101_testprotocol", new_id)
    await assert_current(session)
    stats = await intel.incident_stats(session, intel.StatsQuery(chain="bsc"))
    assert stats.incidents == 1
    # The emptied rows are gone: no group shows zero incidents.
    assert all(n > 0 for n, _ in (await stored(session)).values())


async def test_a_chain_listing_sees_a_changed_loss(session: AsyncSession) -> None:
    await ingest(session, [report()])
    query = intel.SearchQuery(chain="ethereum", min_loss_usd=2_000_000)
    assert (await intel.search_incidents(session, query)).incidents == []
    await ingest(session, [report(loss_usd=3_000_000, loss_text="$3M")])
    found = await intel.search_incidents(session, query)
    assert [i.loss_usd for i in found.incidents] == [3_000_000]
    by_loss = intel.SearchQuery(chain="ethereum", sort="loss")
    assert [i.id for i in (await intel.search_incidents(session, by_loss)).incidents] == [
        "20250101_testprotocol"
    ]

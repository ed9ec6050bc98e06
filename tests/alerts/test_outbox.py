"""An ingest announces what it created or changed in the outbox, in its own transaction."""

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.alerts.events import ChangeKind, IncidentChange
from kamiyo.alerts.rules import AlertFilters, matches
from kamiyo.db.alerts import INCIDENT_KIND, OutboxEntry
from kamiyo.db.tables import Incident
from kamiyo.intel.store import Store
from tests.intel.test_store import ATTACKER, ingest, report


async def announced(session: AsyncSession) -> list[tuple[str, int]]:
    rows = (await session.scalars(select(OutboxEntry).order_by(OutboxEntry.pk))).all()
    assert all(row.kind == INCIDENT_KIND for row in rows)
    return [(row.payload["change"], row.payload["incident_pk"]) for row in rows]


async def test_new_changed_and_unchanged_incidents(migrated_session: AsyncSession) -> None:
    session = migrated_session
    await session.execute(delete(OutboxEntry))
    await ingest(session, [report()])
    pk = await session.scalar(select(Incident.pk).where(Incident.id == "20250101_testprotocol"))
    assert await announced(session) == [("created", pk)]
    await ingest(session, [report()])  # nothing new: nothing announced
    assert await announced(session) == [("created", pk)]
    await ingest(session, [report(loss_text="$1.2M", loss_usd=1_200_000)])
    assert await announced(session) == [("created", pk), ("updated", pk)]


async def test_the_bundle_is_not_news(migrated_session: AsyncSession) -> None:
    session = migrated_session
    await session.execute(delete(OutboxEntry))
    await ingest(session, [report(source_id="other", protocol="Other")], origin="bundle")
    assert await announced(session) == []


async def test_a_rolled_back_ingest_announces_nothing(migrated_session: AsyncSession) -> None:
    session = migrated_session
    await session.execute(delete(OutboxEntry))
    await session.commit()
    store = await Store.load(session)
    await store.ingest(session, [report(source_id="rolled", protocol="Rolled")], origin="live")
    await session.rollback()
    assert await announced(session) == []


async def test_filters(migrated_session: AsyncSession) -> None:
    session = migrated_session
    await ingest(session, [report()])
    incident = await intel.get_incident(session, "20250101_testprotocol")
    assert incident is not None
    change = IncidentChange(change=ChangeKind.CREATED, incident=incident)
    assert change.event == "incident.created"
    assert matches(AlertFilters(), change)
    assert matches(AlertFilters(protocols=["test protocol"], chains=["Ethereum"]), change)
    assert matches(AlertFilters(addresses=[ATTACKER.upper().replace("0X", "0x")]), change)
    assert matches(AlertFilters(min_loss_usd=1_000_000, attack_types=["reentrancy"]), change)
    assert not matches(AlertFilters(chains=["bsc"]), change)
    assert not matches(AlertFilters(protocols=["Euler"]), change)
    assert not matches(AlertFilters(min_loss_usd=2_000_000), change)
    assert not matches(AlertFilters(attack_types=["flash_loan"]), change)
    assert incident.date == dt.date(2025, 1, 1)

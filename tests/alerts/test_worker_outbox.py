"""The worker turns each announced change into one delivery per matching rule and one event on
the change bus, once, however many workers run and whichever of them dies half-way."""

import asyncio
import datetime as dt

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.accounts import create_account
from kamiyo.alerts.bus import Event, MemoryBus
from kamiyo.alerts.events import AlertMatch, IncidentChange
from kamiyo.alerts.leases import claim_outbox, lease_of
from kamiyo.alerts.outbox import work_outbox
from kamiyo.config import Settings
from kamiyo.db.alerts import AlertDelivery, AlertRule, OutboxEntry
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.intel.reports import SourceReport
from tests.intel.test_store import ATTACKER, ingest, report

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
SETTINGS = Settings(environment="test", _env_file=None)
Sessions = async_sessionmaker[AsyncSession]
LEASE = lease_of(SETTINGS.alerts)


def unlinked(n: int) -> SourceReport:
    """A report of an incident of its own: no address, transaction or link to merge it by."""
    return report(
        source_id=f"s{n}", protocol=f"Protocol {n}", addresses=[], transactions=[], references=[]
    )


async def add_rule(
    session: AsyncSession,
    rule_id: str,
    filters: dict[str, object],
    *,
    webhook: str | None = "https://receiver.example/hook",
    enabled: bool = True,
    expires_at: dt.datetime | None = None,
    account_pk: int | None = None,
) -> int:
    rule = AlertRule(
        id=rule_id,
        account_pk=account_pk,
        payer=None if account_pk is not None else "0x" + "11" * 20,
        name=rule_id,
        filters=filters,
        webhook_url=webhook,
        secret="sealed",
        enabled=enabled,
        failures=0,
        created_at=NOW,
        expires_at=expires_at,
    )
    session.add(rule)
    await session.flush()
    return rule.pk


async def deliveries(session: AsyncSession) -> list[tuple[str, str, str | None]]:
    rows = await session.execute(
        select(AlertRule.id, AlertDelivery.event, AlertDelivery.incident_id)
        .join(AlertRule, AlertRule.pk == AlertDelivery.rule_pk)
        .order_by(AlertRule.id)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def pending_outbox(session: AsyncSession) -> int:
    return (
        await session.scalar(
            select(func.count(OutboxEntry.pk)).where(OutboxEntry.done_at.is_(None))
        )
        or 0
    )


@pytest.fixture
async def sessions(migrated_sessions: Sessions) -> Sessions:
    async with migrated_sessions() as session:
        await session.execute(delete(OutboxEntry))
        await add_rule(session, "alr_any", {})
        await add_rule(session, "alr_eth", {"chains": ["ethereum"], "min_loss_usd": 500_000})
        await add_rule(session, "alr_watch", {"addresses": [ATTACKER]})
        await add_rule(session, "alr_bsc", {"chains": ["bsc"]})
        account = await create_account(session, "watcher@example.com")
        await add_rule(session, "alr_mcp_only", {}, webhook=None, account_pk=account.pk)
        await add_rule(session, "alr_off", {}, enabled=False)
        await add_rule(session, "alr_expired", {}, expires_at=NOW - dt.timedelta(days=1))
        await session.commit()
    return migrated_sessions


async def test_one_delivery_per_matching_rule_and_one_event(sessions: Sessions) -> None:
    heard: list[Event] = []
    bus = MemoryBus()
    bus.subscribe(heard.append)
    async with sessions() as session:
        await ingest(session, [report()])
    assert await work_outbox(sessions, SETTINGS, bus, NOW) == 1
    async with sessions() as session:
        assert await deliveries(session) == [
            ("alr_any", "incident.created", "20250101_testprotocol"),
            ("alr_eth", "incident.created", "20250101_testprotocol"),
            ("alr_mcp_only", "incident.created", "20250101_testprotocol"),
            ("alr_watch", "incident.created", "20250101_testprotocol"),
        ]
        assert await pending_outbox(session) == 0
        delivery = await session.scalar(select(AlertDelivery).limit(1))
        assert delivery is not None
        assert delivery.status == "pending"
        assert delivery.id.startswith("msg_")
        assert '"type":"incident.created"' in delivery.body
        # A rule without a webhook keeps the match as its log; nothing is left to send.
        statuses = await session.execute(
            select(AlertRule.id, AlertDelivery.status).join(
                AlertRule, AlertRule.pk == AlertDelivery.rule_pk
            )
        )
        assert {row[0]: row[1] for row in statuses}["alr_mcp_only"] == "notified"
    # The change first, then the match of the one rule whose account has sessions to tell
    # (the other rules are monitors paid per call).
    assert len(heard) == 2
    change, match = heard
    assert isinstance(change, IncidentChange)
    assert (change.event, change.incident.id) == ("incident.created", "20250101_testprotocol")
    assert isinstance(match, AlertMatch)
    assert (match.alert_id, match.incident_id) == ("alr_mcp_only", "20250101_testprotocol")
    assert await work_outbox(sessions, SETTINGS, bus, NOW) == 0  # nothing left


async def test_a_change_is_told_to_subscribers_not_to_webhooks(sessions: Sessions) -> None:
    async with sessions() as session:
        await ingest(session, [report()])
    await work_outbox(sessions, SETTINGS, None, NOW)
    heard: list[Event] = []
    bus = MemoryBus()
    bus.subscribe(heard.append)
    async with sessions() as session:
        await ingest(session, [report(loss_text="$1.2M", loss_usd=1_200_000)])
    assert await work_outbox(sessions, SETTINGS, bus, NOW) == 1
    assert len(heard) == 1  # no rule hears of an update
    assert isinstance(heard[0], IncidentChange)
    assert heard[0].event == "incident.updated"
    assert heard[0].incident.loss_usd == 1_200_000
    async with sessions() as session:
        assert len(await deliveries(session)) == 4  # the first change's only


async def test_a_dead_workers_rows_are_taken_up_after_its_lease(sessions: Sessions) -> None:
    async with sessions() as session:
        await ingest(session, [report()])
        claimed = await claim_outbox(session, NOW, LEASE, 10)  # this worker then dies
        await session.commit()
    assert len(claimed) == 1
    assert await work_outbox(sessions, SETTINGS, None, NOW + LEASE / 2) == 0  # still leased
    later = NOW + LEASE + dt.timedelta(seconds=1)
    assert await work_outbox(sessions, SETTINGS, None, later) == 1
    async with sessions() as session:
        assert len(await deliveries(session)) == 4
        row = await session.get(OutboxEntry, claimed[0].pk)
        assert row is not None
        assert (row.attempts, row.done_at is not None) == (2, True)


async def test_concurrent_workers_deliver_once_per_rule(
    sessions: Sessions, migrated_database_url: str
) -> None:
    async with sessions() as session:
        for n in range(20):
            await ingest(session, [unlinked(n)])
        url = session.get_bind().engine.url.render_as_string(hide_password=False)
    # Four workers, each with its own engine (its own connections), as on four instances.
    engines = [create_engine(url) for _ in range(4)]
    try:
        worked = await asyncio.gather(
            *(work_outbox(session_factory(e), SETTINGS, None, NOW, limit=3) for e in engines)
        )
        while sum(worked) < 20:
            more = await asyncio.gather(
                *(work_outbox(session_factory(e), SETTINGS, None, NOW, limit=3) for e in engines)
            )
            assert sum(more) > 0
            worked = [a + b for a, b in zip(worked, more, strict=True)]
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(worked) == 20
    async with sessions() as session:
        found = await deliveries(session)
        assert len(found) == 20 * 3  # alr_any, alr_eth, alr_mcp_only (no address listed)
        assert len(set(found)) == len(found)
        assert await pending_outbox(session) == 0

"""From an ingested incident to a signed POST on a real loopback receiver: verified with the
``standardwebhooks`` library, retried on the schedule, switched off after repeated failures
(with a mail queued for the owner), and delivered once when a worker dies mid-way."""

import datetime as dt
from collections.abc import Iterator

import pytest
import standardwebhooks
from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.alerts import mail
from kamiyo.alerts.delivery import (
    FAILED_DELIVERIES_TO_DISABLE,
    MAX_ATTEMPTS,
    RETRY_WAITS,
    deliver_due,
)
from kamiyo.alerts.leases import claim_deliveries, lease_of
from kamiyo.alerts.outbox import work_outbox
from kamiyo.alerts.secrets import new_secret, seal
from kamiyo.config import AuthSettings, Settings, WebhookSettings
from kamiyo.db.alerts import MAIL_KIND, AlertDelivery, AlertRule, OutboxEntry
from kamiyo.db.tables import Account
from tests.alerts.receiver import Answer, Receiver
from tests.alerts.test_worker_outbox import unlinked
from tests.intel.test_store import ingest

pytestmark = pytest.mark.anyio

# Deliveries are due from their change's time (the real clock, at ingest): a day later, all are.
NOW = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
SECRET_KEY = SecretStr("k" * 40)
SETTINGS = Settings(
    environment="test",
    auth=AuthSettings(secret_key=SECRET_KEY, _env_file=None),
    webhooks=WebhookSettings(allow_loopback=True, timeout_s=3, _env_file=None),
    _env_file=None,
)
Sessions = async_sessionmaker[AsyncSession]
LEASE = lease_of(SETTINGS.alerts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def make_rule(sessions: Sessions, url: str) -> str:
    """An account's rule on every incident, with its secret sealed; returns the secret."""
    secret = new_secret()
    async with sessions() as session:
        await session.execute(delete(OutboxEntry))
        account = Account(email="owner@example.com", status="active", created_at=NOW)
        session.add(account)
        await session.flush()
        session.add(
            AlertRule(
                id="alr_all",
                account_pk=account.pk,
                name="everything",
                filters={},
                webhook_url=url,
                secret=seal(SECRET_KEY, secret),
                enabled=True,
                failures=0,
                created_at=NOW,
            )
        )
        await session.commit()
    return secret


async def new_incident(sessions: Sessions, n: int = 0) -> None:
    async with sessions() as session:
        await ingest(session, [unlinked(n)])
    await work_outbox(sessions, SETTINGS, None, NOW)


async def the_deliveries(sessions: Sessions) -> list[AlertDelivery]:
    async with sessions() as session:
        return list(await session.scalars(select(AlertDelivery).order_by(AlertDelivery.pk)))


async def test_a_new_incident_arrives_signed(
    migrated_sessions: Sessions, receiver: Receiver
) -> None:
    secret = await make_rule(migrated_sessions, receiver.url())
    await new_incident(migrated_sessions)
    now = dt.datetime.now(dt.UTC)  # the verifier checks the signed timestamp against its clock
    assert await deliver_due(migrated_sessions, SETTINGS, now) == 1
    [post] = receiver.posts
    payload = standardwebhooks.Webhook(secret).verify(post.body, post.headers)
    assert payload["type"] == "incident.created"
    assert payload["data"]["alert_id"] == "alr_all"
    assert payload["data"]["incident"]["protocol"] == "Protocol 0"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(post.body, post.headers)
    [delivery] = await the_deliveries(migrated_sessions)
    assert post.headers["webhook-id"] == delivery.id
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200)
    assert delivery.delivered_at == now
    assert await deliver_due(migrated_sessions, SETTINGS, NOW + dt.timedelta(hours=1)) == 0


async def test_a_failing_receiver_is_retried_on_the_schedule(
    migrated_sessions: Sessions, receiver: Receiver
) -> None:
    await make_rule(migrated_sessions, receiver.url())
    receiver.reply = Answer(500)
    await new_incident(migrated_sessions)
    when = NOW
    for attempt, wait in enumerate(RETRY_WAITS, start=1):
        assert await deliver_due(migrated_sessions, SETTINGS, when) == 1
        [delivery] = await the_deliveries(migrated_sessions)
        assert (delivery.status, delivery.attempts) == ("pending", attempt)
        assert (delivery.response_code, delivery.last_error) == (500, "HTTP 500")
        assert delivery.next_attempt_at == when + wait
        # Not before its time.
        assert await deliver_due(migrated_sessions, SETTINGS, when + wait / 2) == 0
        when += wait
    assert await deliver_due(migrated_sessions, SETTINGS, when) == 1
    [delivery] = await the_deliveries(migrated_sessions)
    assert (delivery.status, delivery.attempts) == ("failed", MAX_ATTEMPTS)
    assert len(receiver.posts) == MAX_ATTEMPTS
    assert {post.headers["webhook-id"] for post in receiver.posts} == {delivery.id}
    assert len({post.headers["webhook-timestamp"] for post in receiver.posts}) == MAX_ATTEMPTS
    async with migrated_sessions() as session:
        rule = await session.scalar(select(AlertRule))
        assert rule is not None
        assert (rule.enabled, rule.failures) == (True, 1)


async def test_repeated_failures_switch_the_rule_off_and_tell_the_owner(
    migrated_sessions: Sessions, receiver: Receiver
) -> None:
    await make_rule(migrated_sessions, receiver.url())
    receiver.reply = Answer(410)  # gone: no retry mends it
    for n in range(FAILED_DELIVERIES_TO_DISABLE + 1):
        await new_incident(migrated_sessions, n)
    # The last incident's delivery is still pending when the rule goes off.
    async with migrated_sessions() as session:
        last = await session.scalar(select(AlertDelivery).order_by(AlertDelivery.pk.desc()))
        assert last is not None
        last.next_attempt_at = NOW + dt.timedelta(minutes=1)
        await session.commit()
    assert await deliver_due(migrated_sessions, SETTINGS, NOW) == FAILED_DELIVERIES_TO_DISABLE
    deliveries = await the_deliveries(migrated_sessions)
    assert [d.status for d in deliveries] == ["failed"] * FAILED_DELIVERIES_TO_DISABLE + [
        "cancelled"
    ]
    assert all(d.attempts == 1 and d.response_code == 410 for d in deliveries[:-1])
    async with migrated_sessions() as session:
        rule = await session.scalar(select(AlertRule))
        assert rule is not None
        assert rule.enabled is False
        assert rule.disabled_reason is not None
        assert rule.disabled_reason.startswith("3 deliveries in a row failed (the last: HTTP 410")
        [notice] = await session.scalars(select(OutboxEntry).where(OutboxEntry.kind == MAIL_KIND))
        assert notice.payload["template"] == mail.ALERT_DISABLED
        assert notice.payload["alert_id"] == "alr_all"
    assert await deliver_due(migrated_sessions, SETTINGS, NOW + dt.timedelta(hours=1)) == 0


async def test_a_worker_that_dies_mid_delivery_is_taken_over_once(
    migrated_sessions: Sessions, receiver: Receiver
) -> None:
    await make_rule(migrated_sessions, receiver.url())
    await new_incident(migrated_sessions)
    async with migrated_sessions() as session:
        [claimed] = await claim_deliveries(session, NOW, LEASE, 10)  # then this worker dies
        await session.commit()
    assert await deliver_due(migrated_sessions, SETTINGS, NOW + LEASE / 2) == 0
    later = NOW + LEASE + dt.timedelta(seconds=1)
    assert await deliver_due(migrated_sessions, SETTINGS, later) == 1
    assert await deliver_due(migrated_sessions, SETTINGS, later) == 0
    [post] = receiver.posts
    assert post.headers["webhook-id"] == claimed.id
    [delivery] = await the_deliveries(migrated_sessions)
    assert (delivery.status, delivery.attempts) == ("delivered", 1)


async def test_a_refused_address_fails_at_once_with_the_reason(
    migrated_sessions: Sessions, receiver: Receiver
) -> None:
    await make_rule(migrated_sessions, receiver.url())
    await new_incident(migrated_sessions)
    strict = SETTINGS.with_changes(webhooks={"allow_loopback": False})
    assert await deliver_due(migrated_sessions, strict, NOW) == 1
    [delivery] = await the_deliveries(migrated_sessions)
    assert delivery.status == "failed"
    assert delivery.last_error is not None
    assert "127.0.0.1 is a loopback address" in delivery.last_error
    assert receiver.posts == []

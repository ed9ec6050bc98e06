"""Sending due webhook deliveries, retrying on a schedule, and switching off a rule whose
receiver keeps failing.

Every attempt sends the same body under the same ``webhook-id`` (receivers dedupe on it), with
a fresh timestamp and signature. The schedule is Standard Webhooks' own suggestion, cut short:
seven attempts over about eighteen hours. A delivery whose attempts are spent (or that failed
in a way no retry mends: a refused address, a 4xx) counts against its rule; a rule that fails
``FAILED_DELIVERIES_TO_DISABLE`` deliveries in a row is switched off and its owner told by mail.
"""

import asyncio
import datetime as dt
import logging

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.alerts import mail, webhook
from kamiyo.alerts.leases import claim_deliveries
from kamiyo.alerts.secrets import unseal
from kamiyo.config import Settings
from kamiyo.db.alerts import AlertDelivery, AlertRule

log = logging.getLogger(__name__)

# Waits after the first, second, … failed attempt; the attempt after the last wait is the last.
RETRY_WAITS = (
    dt.timedelta(seconds=5),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=5),
    dt.timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_WAITS) + 1
FAILED_DELIVERIES_TO_DISABLE = 3
# Receivers are waited on together, up to this many at once (each attempt may take seconds).
CONCURRENCY = 16


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: dt.datetime,
    limit: int = 200,
) -> int:
    """Claim and attempt up to ``limit`` due deliveries, ``CONCURRENCY`` at a time; the number
    attempted."""
    async with sessions() as session:
        due = await claim_deliveries(session, now, limit)
        await session.commit()
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(delivery: AlertDelivery) -> None:
        async with slots, sessions() as session:
            await _attempt(session, settings, delivery, now)
            await session.commit()

    await asyncio.gather(*(one(delivery) for delivery in due))
    return len(due)


async def _attempt(
    session: AsyncSession, settings: Settings, delivery: AlertDelivery, now: dt.datetime
) -> None:
    rule = await session.get(AlertRule, delivery.rule_pk)
    if rule is None or not rule.enabled or rule.webhook_url is None or rule.secret is None:
        await _set(session, delivery, status="cancelled", last_error="the rule is off or gone")
        return
    attempt = await webhook.send(
        rule.webhook_url,
        webhook_id=delivery.id,
        body=delivery.body,
        secret=unseal(settings.auth.secret_key, rule.secret),
        timestamp=now,
        settings=settings,
    )
    attempts = delivery.attempts + 1
    if attempt.delivered:
        await _set(
            session,
            delivery,
            status="delivered",
            attempts=attempts,
            delivered_at=now,
            response_code=attempt.status_code,
            last_error=None,
        )
        rule.failures = 0
        return
    if attempt.retryable and attempts < MAX_ATTEMPTS:
        await _set(
            session,
            delivery,
            attempts=attempts,
            next_attempt_at=now + RETRY_WAITS[attempts - 1],
            response_code=attempt.status_code,
            last_error=attempt.error,
        )
        return
    await _set(
        session,
        delivery,
        status="failed",
        attempts=attempts,
        response_code=attempt.status_code,
        last_error=attempt.error,
    )
    rule.failures += 1
    log.warning(
        "alert %s: delivery %s failed after %d attempt(s): %s",
        rule.id,
        delivery.id,
        attempts,
        attempt.error,
    )
    if rule.failures >= FAILED_DELIVERIES_TO_DISABLE:
        await _disable(session, rule, attempt.error or "deliveries kept failing", now)


async def _set(session: AsyncSession, delivery: AlertDelivery, **values: object) -> None:
    await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.pk == delivery.pk)
        .values(lease_until=None, **values)
    )


async def _disable(session: AsyncSession, rule: AlertRule, error: str, now: dt.datetime) -> None:
    reason = f"{rule.failures} deliveries in a row failed (the last: {error})"
    rule.enabled = False
    rule.disabled_reason = reason[:300]
    await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.rule_pk == rule.pk, AlertDelivery.status == "pending")
        .values(status="cancelled", last_error="the rule was switched off", lease_until=None)
    )
    log.warning("alert %s switched off: %s", rule.id, reason)
    if rule.account_pk is not None:
        await mail.queue(
            session,
            mail.ALERT_DISABLED,
            now,
            account_pk=rule.account_pk,
            alert_id=rule.id,
            name=rule.name,
            reason=reason,
        )

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

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import metrics
from kamiyo.alerts import mail, webhook
from kamiyo.alerts.leases import claim_deliveries, lease_of
from kamiyo.alerts.secrets import SealError, unseal
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
# Receivers are waited on together, up to this many at once (each attempt may take seconds),
# and a batch is small enough to finish within a lease even when every receiver times out.
CONCURRENCY = 64
BATCH = 4 * CONCURRENCY
RULE_OFF = "the rule was switched off or deleted"


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: dt.datetime,
    limit: int = BATCH,
) -> int:
    """Claim up to ``limit`` due deliveries, attempt them ``CONCURRENCY`` at a time, and record
    the outcomes together; the number attempted.

    Three transactions a batch (claim and read the rules, then record), and none open while
    receivers are waited on. A worker that dies before recording leaves its claims to be taken
    over after the lease: those are sent again, under the same webhook-id.
    """
    async with sessions() as session:
        due = await claim_deliveries(session, now, lease_of(settings.alerts), limit)
        wanted = {delivery.rule_pk for delivery in due}
        rules = {
            rule.pk: rule
            for rule in await session.scalars(select(AlertRule).where(AlertRule.pk.in_(wanted)))
        }
        await session.commit()
    if not due:
        return 0
    slots = asyncio.Semaphore(CONCURRENCY)
    secrets: dict[int, str | SealError] = {}

    async def attempt(delivery: AlertDelivery) -> webhook.Attempt | None:
        rule = rules.get(delivery.rule_pk)
        if rule is None or not rule.enabled or not rule.webhook_url or not rule.secret:
            return None
        if rule.pk not in secrets:
            try:
                secrets[rule.pk] = unseal(settings.auth.secret_key, rule.secret)
            except SealError as exc:  # no retry mends it: the owner must make the rule again
                secrets[rule.pk] = exc
        secret = secrets[rule.pk]
        if isinstance(secret, SealError):
            return webhook.Attempt(False, None, str(secret), retryable=False)
        async with slots:
            return await webhook.send(
                rule.webhook_url,
                webhook_id=delivery.id,
                body=delivery.body,
                secret=secret,
                timestamp=now,
                settings=settings.webhooks,
                require_https=settings.production,
            )

    outcomes = await asyncio.gather(*(attempt(delivery) for delivery in due))
    async with sessions() as session:
        for delivery, outcome in zip(due, outcomes, strict=True):
            rule = rules.get(delivery.rule_pk)
            if outcome is None or rule is None:
                await _set(session, delivery, status="cancelled", last_error=RULE_OFF)
            else:
                await _record(session, rule, delivery, outcome, now)
        await session.commit()
    return len(due)


async def _record(
    session: AsyncSession,
    rule: AlertRule,
    delivery: AlertDelivery,
    attempt: webhook.Attempt,
    now: dt.datetime,
) -> None:
    attempts = delivery.attempts + 1
    seen = {"attempts": attempts, "response_code": attempt.status_code}
    retrying = not attempt.delivered and attempt.retryable and attempts < MAX_ATTEMPTS
    metrics.count_delivery(
        "webhook", "delivered" if attempt.delivered else "retrying" if retrying else "failed"
    )
    if attempt.delivered:
        await _set(session, delivery, status="delivered", delivered_at=now, last_error=None, **seen)
        if rule.failures:
            await session.execute(
                update(AlertRule).where(AlertRule.pk == rule.pk).values(failures=0)
            )
        return
    if retrying:
        wait = RETRY_WAITS[attempts - 1]
        await _set(session, delivery, next_attempt_at=now + wait, last_error=attempt.error, **seen)
        return
    await _set(session, delivery, status="failed", last_error=attempt.error, **seen)
    # Counted in SQL: deliveries of one rule are attempted concurrently.
    failures = await session.scalar(
        update(AlertRule)
        .where(AlertRule.pk == rule.pk)
        .values(failures=AlertRule.failures + 1)
        .returning(AlertRule.failures)
    )
    log.warning(
        "alert %s: delivery %s failed after %d attempt(s): %s",
        rule.id,
        delivery.id,
        attempts,
        attempt.error,
    )
    if (failures or 0) >= FAILED_DELIVERIES_TO_DISABLE:
        await _disable(session, rule, failures or 0, attempt.error or "no answer", now)


async def _set(session: AsyncSession, delivery: AlertDelivery, **values: object) -> None:
    await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.pk == delivery.pk)
        .values(lease_until=None, **values)
    )


async def _disable(
    session: AsyncSession, rule: AlertRule, failures: int, error: str, now: dt.datetime
) -> None:
    reason = f"{failures} deliveries in a row failed (the last: {error})"
    switched = await session.scalar(
        update(AlertRule)
        .where(AlertRule.pk == rule.pk, AlertRule.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason[:300])
        .returning(AlertRule.pk)
    )
    if switched is None:
        return  # another delivery of this rule switched it off a moment ago
    await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.rule_pk == rule.pk, AlertDelivery.status == "pending")
        .values(status="cancelled", last_error=RULE_OFF, lease_until=None)
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

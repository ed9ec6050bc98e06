"""Working the outbox: each incident change becomes one delivery per matching rule and one event
on the change bus; each mail row becomes a mail.

A row is finished in the same transaction that writes its deliveries, and deliveries are unique
per (rule, row): a worker that dies half-way leaves the row leased, the next claim after the
lease does it again, and no rule gets a second copy. The change bus (MCP sessions) is told as
soon as the change is read, before the deliveries are written (so a thousand rules do not hold
up a thousand sessions); a worker that dies before finishing the row tells it again, and a
repeated "updated" is harmless to a subscriber. Each rule a new incident matches is told to its
account's sessions (``AlertMatch``) once the delivery that records the match is committed, so a
session that reads the rule's resource on being told finds it; a rule without a webhook keeps
that record as its log (status ``notified``) and sends nothing else.
"""

import datetime as dt
import logging
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import metrics
from kamiyo.alerts import mail
from kamiyo.alerts.bus import ChangeBus
from kamiyo.alerts.events import AlertMatch, ChangeKind, IncidentChange, webhook_body
from kamiyo.alerts.leases import claim_outbox, lease_of
from kamiyo.alerts.manage import active, new_delivery_id
from kamiyo.alerts.rules import AlertFilters, matches
from kamiyo.config import Settings
from kamiyo.db.alerts import INCIDENT_KIND, MAIL_KIND, AlertDelivery, AlertRule, OutboxEntry
from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.intel.search import get_incident

log = logging.getLogger(__name__)

# A row that failed this many times is set aside (finished, with its last error) so one
# poisoned row cannot hold the queue; the operator reads why in the log and the row.
MAX_ROW_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class Rule:
    """What matching needs of a rule, read once per batch."""

    pk: int
    id: str
    filters: AlertFilters
    account_pk: int | None  # None: a monitor paid per call (no sessions to tell)
    webhook: bool


async def _live_rules(session: AsyncSession, now: dt.datetime) -> list[Rule]:
    rows = await session.execute(
        select(
            AlertRule.pk,
            AlertRule.id,
            AlertRule.filters,
            AlertRule.account_pk,
            AlertRule.webhook_url.is_not(None),
        ).where(active(now))
    )
    rules = []
    for pk, rule_id, filters, account_pk, webhook in rows:
        try:
            filters = AlertFilters.model_validate(filters)
            rules.append(Rule(pk, rule_id, filters, account_pk, bool(webhook)))
        except ValueError:  # written by an older version: skipped, not fatal to the others
            log.error("alert rule %s has filters this version cannot read; skipped", rule_id)
    return rules


async def _change_of(session: AsyncSession, entry: OutboxEntry) -> IncidentChange | None:
    payload = entry.payload
    incident_id = await session.scalar(
        select(IncidentRow.id).where(IncidentRow.pk == int(payload["incident_pk"]))
    )
    incident = None if incident_id is None else await get_incident(session, incident_id)
    if incident is None:  # merged away or split since: nothing left to announce
        return None
    return IncidentChange(change=ChangeKind(payload["change"]), incident=incident)


async def _queue_deliveries(
    session: AsyncSession, entry: OutboxEntry, change: IncidentChange, rules: list[Rule]
) -> list[Rule]:
    """One delivery per matching rule (rules hear of new incidents; MCP subscribers of the
    incident resources, told through the bus, also hear of changes to known ones); the rules
    that matched."""
    if change.change is not ChangeKind.CREATED:
        return []
    matched = [rule for rule in rules if matches(rule.filters, change)]
    data = change.webhook_data("")  # the incident dumped once, not once per rule
    rows = [
        {
            "id": new_delivery_id(),
            "rule_pk": rule.pk,
            "outbox_pk": entry.pk,
            "event": change.event,
            "incident_id": change.incident.id,
            "body": webhook_body(change.event, {**data, "alert_id": rule.id}, entry.created_at),
            "status": "pending" if rule.webhook else "notified",
            "attempts": 0,
            "next_attempt_at": entry.created_at,
            "created_at": entry.created_at,
        }
        for rule in matched
    ]
    if rows:
        dialect_insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
        statement = dialect_insert(AlertDelivery).on_conflict_do_nothing(
            index_elements=["rule_pk", "outbox_pk"]
        )
        await session.execute(statement, rows)
    return matched


async def _finish(session: AsyncSession, pk: int, now: dt.datetime, error: str | None) -> None:
    await session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.pk == pk)
        .values(done_at=now, lease_until=None, last_error=error)
    )


Sessions = async_sessionmaker[AsyncSession]


async def work_outbox(
    sessions: Sessions,
    settings: Settings,
    bus: ChangeBus | None,
    now: dt.datetime,
    limit: int = 100,
    kinds: Collection[str] | None = None,
) -> int:
    """Claim and work up to ``limit`` rows (of ``kinds``, or any); the number worked."""
    async with sessions() as session:
        entries = await claim_outbox(session, now, lease_of(settings.alerts), limit, kinds)
        await session.commit()
        rules = await _live_rules(session, now) if entries else []
    for entry in entries:
        matched: list[AlertMatch] = []
        try:
            async with sessions() as session:
                if entry.kind == INCIDENT_KIND:
                    change = await _change_of(session, entry)
                    if change is not None:
                        if bus is not None:  # sessions first: they wait on no receiver
                            await bus.publish(change)
                        matched = [
                            AlertMatch(
                                alert_id=rule.id,
                                account_pk=rule.account_pk,
                                incident_id=change.incident.id,
                            )
                            for rule in await _queue_deliveries(session, entry, change, rules)
                            if rule.account_pk is not None
                        ]
                elif entry.kind == MAIL_KIND:
                    await mail.send(sessions, settings, session, entry.payload)
                    metrics.count_delivery("mail", "sent")
                else:
                    log.error(
                        "outbox row %s has an unknown kind %r; set aside", entry.pk, entry.kind
                    )
                await _finish(session, entry.pk, now, None)
                await session.commit()
        except Exception as exc:  # one row's failure must not stop the others
            await _failed(sessions, entry, now, exc)
            continue
        if bus is not None:
            for match in matched:
                await bus.publish(match)
    return len(entries)


async def _failed(sessions: Sessions, entry: OutboxEntry, now: dt.datetime, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:500]
    give_up = entry.attempts >= MAX_ROW_ATTEMPTS
    if entry.kind == MAIL_KIND:
        metrics.count_delivery("mail", "failed")
    log.error(
        "outbox row %s (%s) failed, attempt %d: %s%s",
        entry.pk,
        entry.kind,
        entry.attempts,
        error,
        "; set aside" if give_up else "; retried when its lease ends",
    )
    async with sessions() as session:
        if give_up:
            await _finish(session, entry.pk, now, error)
        else:
            await session.execute(
                update(OutboxEntry).where(OutboxEntry.pk == entry.pk).values(last_error=error)
            )
        await session.commit()

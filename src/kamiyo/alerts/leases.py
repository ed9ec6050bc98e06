"""Claiming work by a lease: how several workers share the outbox and the deliveries.

A claim is one statement: rows that are due and not leased (or whose lease ran out: their
worker died) get a lease and are returned. On PostgreSQL the inner select locks with ``FOR
UPDATE SKIP LOCKED``, so concurrent workers take disjoint rows without waiting on each other;
SQLite has one writer at a time, so the single ``UPDATE … RETURNING`` is already atomic there
(SQLAlchemy leaves the locking clause out for it).

The lease (``KAMIYO_ALERTS_LEASE_S``) is long enough for one batch's work (a webhook attempt
times out well within it) and short enough that a dead worker's rows are taken up soon after.
"""

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.config import AlertSettings
from kamiyo.db.alerts import AlertDelivery, OutboxEntry


def lease_of(settings: AlertSettings) -> dt.timedelta:
    return dt.timedelta(seconds=settings.lease_s)


def _unleased(lease_until: Any, now: dt.datetime) -> ColumnElement[bool]:
    return or_(lease_until.is_(None), lease_until < now)


async def claim_outbox(
    session: AsyncSession,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int,
    kinds: Collection[str] | None = None,
) -> list[OutboxEntry]:
    """Up to ``limit`` unfinished outbox rows (of ``kinds``, or any), oldest first, leased to
    the caller."""
    due = (
        select(OutboxEntry.pk)
        .where(OutboxEntry.done_at.is_(None), _unleased(OutboxEntry.lease_until, now))
        .where(OutboxEntry.kind.in_(kinds) if kinds is not None else true())
        .order_by(OutboxEntry.pk)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = (
        update(OutboxEntry)
        .where(OutboxEntry.pk.in_(due.scalar_subquery()))
        .values(lease_until=now + lease, attempts=OutboxEntry.attempts + 1)
        .returning(OutboxEntry)
    )
    rows = list(await session.scalars(claimed))
    return sorted(rows, key=lambda row: row.pk)


async def claim_deliveries(
    session: AsyncSession, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[AlertDelivery]:
    """Up to ``limit`` pending deliveries whose next attempt is due, leased to the caller."""
    due = (
        select(AlertDelivery.pk)
        .where(
            AlertDelivery.status == "pending",
            AlertDelivery.next_attempt_at <= now,
            _unleased(AlertDelivery.lease_until, now),
        )
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.pk)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = (
        update(AlertDelivery)
        .where(AlertDelivery.pk.in_(due.scalar_subquery()))
        .values(lease_until=now + lease)
        .returning(AlertDelivery)
    )
    rows = list(await session.scalars(claimed))
    return sorted(rows, key=lambda row: (row.next_attempt_at, row.pk))

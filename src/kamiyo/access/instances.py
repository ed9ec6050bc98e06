"""Serving instances, so that ``kamiyo usage verify`` can say where usage may be missing.

The meter writes what it recorded every ``meter_flush_s`` seconds (1) and on a clean stop. An
instance killed without one (SIGKILL, a crash, its machine gone) takes the calls it answered
since its last write with it: up to one flush interval's, or more if it could not reach the
database before it died. The hash chains cannot show this (nothing was ever written to break
them), so each instance keeps a row: its meter registers it on start, every write stamps
``last_flush_at`` in the same transaction as the batch, and a clean stop sets ``stopped_at``
with the last batch. A row with no ``stopped_at`` whose instance no longer writes is such a
death.

An instance counts as gone when its last write is older than ``STALE_AFTER_FLUSHES`` of its
intervals (at least ``MIN_STALE_S``), or at once when it ran on this host and its pid is gone.
One cut off from the database for longer looks gone too, until it writes again: the report says
"may be missing", not "missing".
"""

import datetime as dt
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.usage import ServingInstance

STALE_AFTER_FLUSHES = 5
MIN_STALE_S = 10.0


@dataclass(frozen=True, slots=True)
class Instance:
    """This process, as its row names it."""

    id: str
    host: str
    pid: int
    started_at: dt.datetime
    flush_s: float

    @classmethod
    def this_process(cls, flush_s: float) -> "Instance":
        return cls(
            id=secrets.token_hex(8),
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            started_at=dt.datetime.now(dt.UTC),
            flush_s=flush_s,
        )


async def mark_flushed(
    session: AsyncSession, instance: Instance, at: dt.datetime, *, stopping: bool = False
) -> None:
    """In the meter's write transaction: every call recorded before ``at`` is written."""
    stopped_at = at if stopping else None
    done = await session.execute(
        update(ServingInstance)
        .where(ServingInstance.id == instance.id)
        .values(last_flush_at=at, stopped_at=stopped_at)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], done).rowcount == 0:  # the first write, or the row was removed
        await session.execute(
            insert(ServingInstance).values(
                id=instance.id,
                host=instance.host,
                pid=instance.pid,
                started_at=instance.started_at,
                flush_s=instance.flush_s,
                last_flush_at=at,
                stopped_at=stopped_at,
            )
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """An instance that died without a clean stop: calls it answered after ``last_flush_at``
    may be missing from the records."""

    id: str
    host: str
    pid: int
    started_at: dt.datetime
    last_flush_at: dt.datetime
    flush_s: float

    def describe(self) -> str:
        at = self.last_flush_at.astimezone(dt.UTC).isoformat(timespec="seconds")
        return (
            f"instance {self.id} ({self.host}, pid {self.pid}) stopped without a clean shutdown; "
            f"its last usage write was at {at} and it wrote every {self.flush_s:g} s, so calls it "
            f"answered in the up to {self.flush_s:g} s after that (longer if it had lost the "
            "database) may be missing from the records"
        )


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user
        return False
    return False


def _gone(row: ServingInstance, now: dt.datetime, host: str) -> bool:
    stale_after = max(STALE_AFTER_FLUSHES * row.flush_s, MIN_STALE_S)
    if (now - row.last_flush_at).total_seconds() > stale_after:
        return True
    return row.host == host and _pid_gone(row.pid)


async def unclean_stops(session: AsyncSession) -> list[Gap]:
    """Instances that never stopped cleanly and are no longer running, oldest first."""
    now, host = dt.datetime.now(dt.UTC), socket.gethostname()[:255]
    rows = await session.scalars(
        select(ServingInstance)
        .where(ServingInstance.stopped_at.is_(None))
        .order_by(ServingInstance.last_flush_at)
    )
    return [
        Gap(row.id, row.host, row.pid, row.started_at, row.last_flush_at, row.flush_s)
        for row in rows
        if _gone(row, now, host)
    ]

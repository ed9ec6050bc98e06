"""The alerts worker: works the outbox and the due webhook deliveries, on every serving
instance and in ``kamiyo worker``.

Work is shared by leases (``leases.py``), so any number of workers may run against one
database. Each polls every ``KAMIYO_ALERTS_POLL_S`` (half a second) and is woken at once when
its own instance ingests, so a change reaches subscribers well within a second of its commit.
"""

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.alerts.bus import ChangeBus
from kamiyo.alerts.delivery import deliver_due
from kamiyo.alerts.outbox import work_outbox
from kamiyo.config import Settings

log = logging.getLogger(__name__)

# After a failed round (the database away), wait longer each time, up to this.
MAX_PAUSE_S = 30.0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AlertWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        bus: ChangeBus | None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._bus = bus
        self._poll_s = settings.alerts.poll_s
        self._woken = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Work now rather than at the next poll (this instance just wrote to the outbox)."""
        self._woken.set()

    async def run_once(self, now: dt.datetime | None = None) -> int:
        """One round: outbox rows, then due deliveries; how many of both were worked."""
        when = now or utcnow()
        worked = await work_outbox(self._sessions, self._settings, self._bus, when)
        return worked + await deliver_due(self._sessions, self._settings, now or utcnow())

    def stop(self) -> None:
        """Return from :meth:`run` once the round in progress is done."""
        self._stopping = True
        self._woken.set()

    async def run(self) -> None:
        pause = self._poll_s
        while not self._stopping:
            try:
                busy = await self.run_once()
                pause = self._poll_s
            except (SQLAlchemyError, OSError) as exc:
                pause = min(max(pause * 2, 1.0), MAX_PAUSE_S)
                log.error(
                    "alerts worker: the database is unavailable (%s); trying again in %.0f s",
                    type(exc).__name__,
                    pause,
                )
                busy = 0
            if busy or self._stopping:
                continue  # more may be waiting
            with suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), pause)
            self._woken.clear()


@asynccontextmanager
async def alerts_working(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, bus: ChangeBus | None
) -> AsyncIterator[AlertWorker]:
    """A worker running in the background while the block runs.

    On the way out its round in progress finishes, so that a webhook sent is also marked sent
    (cancelled between the two, it would go again once its lease ended), within
    ``KAMIYO_SHUTDOWN_GRACE_S``; then it is cancelled, and what it claimed waits for its lease
    to end and another worker.
    """
    worker = AlertWorker(sessions, settings, bus)
    task = asyncio.create_task(worker.run(), name="kamiyo-alerts")
    try:
        yield worker
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), settings.shutdown.grace_s)
        except TimeoutError:
            log.error(
                "alerts worker: its round did not finish within %.0f s of stopping; cancelled "
                "(its claims wait for their leases to end)",
                settings.shutdown.grace_s,
            )
        except Exception:
            log.exception("alerts worker failed")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

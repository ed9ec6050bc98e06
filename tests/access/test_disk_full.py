"""A full disk under the meter (SQLite): one outage line, not a traceback a flush; the held
events are written once there is room again.

Found by ``bench/faults.py disk``: with SQLite on a filled filesystem every flush (each second,
on every instance) logged ``usage meter could not write N events`` with a full traceback until
space came back. The disk is made full here by SQLite itself: ``PRAGMA max_page_count`` at the
file's current size makes a write that needs a new page fail with SQLITE_FULL ("database or
disk is full"), the error a full filesystem gives.
"""

import datetime as dt
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kamiyo import outages
from kamiyo.access.meter import Meter, UsageEvent
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.usage import UsageRecord

# Each test with its own outage reporter (tests/conftest.py).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("database_outage")]

EVENTS = 400  # more than the file's free space holds: the write needs new pages


class Disk:
    """Whether the next connections find the disk full (pages capped at the file's size)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.full = False
        event.listen(engine.sync_engine, "connect", self._cap)

    def _cap(self, connection: Any, _record: Any) -> None:
        if self.full:
            cursor = connection.cursor()
            cursor.execute("PRAGMA page_count")
            (pages,) = cursor.fetchone()
            cursor.execute(f"PRAGMA max_page_count = {int(pages)}")
            cursor.close()

    async def fill(self) -> None:
        self.full = True
        await self.engine.dispose()  # new connections, capped

    async def free(self) -> None:
        self.full = False
        await self.engine.dispose()


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[tuple[Disk, async_sessionmaker[AsyncSession]]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'kamiyo.db'}")
    try:
        await migrate.upgrade(engine)
        yield Disk(engine), session_factory(engine)
    finally:
        await engine.dispose()


def usage_event() -> UsageEvent:
    return UsageEvent(
        at=dt.datetime.now(dt.UTC),
        account_pk=1,
        key_pk=None,
        tool="search_exploits",
        tier="enterprise",
        status="ok",
        duration_us=1000,
        result_count=10,
        cost_units=1,
    )


async def records(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def test_a_full_sqlite_file_is_an_outage_not_a_bug() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    assert outages.is_unreachable(full)
    corrupt = sqlite3.DatabaseError("database disk image is malformed")
    corrupt.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
    assert not outages.is_unreachable(corrupt)


async def test_a_full_disk_is_one_line_and_the_held_events_are_written_when_room_returns(
    disk: tuple[Disk, async_sessionmaker[AsyncSession]], caplog: pytest.LogCaptureFixture
) -> None:
    space, sessions = disk
    meter = Meter(flush_interval_s=3600)
    with caplog.at_level(logging.INFO):
        async with meter.running(sessions):
            await space.fill()
            for _ in range(EVENTS):
                meter.record(usage_event())
            for _ in range(5):  # five flush intervals while the disk is full
                assert await meter.flush() == 0
            assert len(meter.pending(1)) == EVENTS  # held, none dropped
            assert await records(sessions) == 0
            await space.free()
            assert await meter.flush() == EVENTS
    assert await records(sessions) == EVENTS
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]
    assert tracebacks == []
    messages = [r.getMessage() for r in caplog.records if r.name == "kamiyo.outages"]
    assert [m for m in messages if m.startswith("database unavailable (")] == [
        "database unavailable (OperationalError: database or disk is full); requests that "
        "need it are refused as temporarily unavailable until it is back"
    ]
    assert any(m.startswith("database back after ") for m in messages)


def test_an_sqlite_error_without_a_code_is_not_taken_for_a_full_disk() -> None:
    assert not outages.is_unreachable(sqlite3.OperationalError("database or disk is full"))

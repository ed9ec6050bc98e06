"""Which instances ``kamiyo usage verify`` names as possible gaps in the usage records."""

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.instances import MIN_STALE_S, unclean_stops
from kamiyo.db.usage import ServingInstance

pytestmark = pytest.mark.anyio


def _row(
    name: str, host: str, pid: int, last: dt.datetime, stopped: dt.datetime | None = None
) -> ServingInstance:
    return ServingInstance(
        id=name,
        host=host,
        pid=pid,
        started_at=last - dt.timedelta(hours=1),
        flush_s=1.0,
        last_flush_at=last,
        stopped_at=stopped,
    )


@pytest.fixture
def gone_pid() -> int:
    """The pid of a process that has exited, and been reaped."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


async def test_instances_that_died_are_gaps_and_running_or_stopped_ones_are_not(
    migrated_sessions: async_sessionmaker[AsyncSession], gone_pid: int
) -> None:
    now = dt.datetime.now(dt.UTC)
    here = socket.gethostname()
    assert MIN_STALE_S < 5 * 60  # "silent for five minutes" below is stale
    async with migrated_sessions() as session:
        session.add_all(
            [
                # This host, its pid gone: dead at once, however recent its last write.
                _row("killed-here", here, gone_pid, now),
                # Another host, silent for long: dead.
                _row("silent-there", "elsewhere", 4242, now - dt.timedelta(minutes=5)),
                # Another host, wrote a moment ago: alive.
                _row("alive-there", "elsewhere", 4243, now - dt.timedelta(seconds=1)),
                # This process: alive.
                _row("alive-here", here, os.getpid(), now),
                # Stopped cleanly long ago: no gap.
                _row("stopped", "elsewhere", 4244, now - dt.timedelta(days=3), now),
            ]
        )
        await session.commit()
        gaps = await unclean_stops(session)
    assert [gap.id for gap in gaps] == ["silent-there", "killed-here"]  # oldest write first
    assert (
        gaps[1]
        .describe()
        .startswith(
            f"instance killed-here ({here}, pid {gone_pid}) stopped without a clean shutdown; "
            "its last usage write was at "
        )
    )

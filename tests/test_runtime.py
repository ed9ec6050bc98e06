import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.tables import Incident, SourceReportRow
from kamiyo.runtime import SchemaOutOfDateError, open_runtime

pytestmark = pytest.mark.anyio


async def test_without_upgrade_an_empty_database_is_refused_clearly(
    empty_database_url: str,
) -> None:
    settings = Settings(database=DatabaseSettings(url=empty_database_url), _env_file=None)
    with pytest.raises(SchemaOutOfDateError, match="run `kamiyo db upgrade`"):
        async with open_runtime(settings, upgrade=False):
            pass


async def test_two_processes_starting_at_once_load_the_data_once(
    empty_database_url: str,
) -> None:
    settings = Settings(database=DatabaseSettings(url=empty_database_url), _env_file=None)

    async def start() -> int:
        async with open_runtime(settings, upgrade=True) as runtime, runtime.sessions() as session:
            return await session.scalar(select(func.count(Incident.pk))) or 0

    counts = await asyncio.gather(start(), start(), start())
    assert len(set(counts)) == 1  # each saw the whole load: none started on half of it
    assert counts[0] > 860  # DeFiHackLabs and the notable table, merged
    async with open_runtime(settings) as runtime, runtime.sessions() as session:
        reports = await session.scalar(select(func.count(SourceReportRow.pk)))
    assert reports == 860 + 231  # loaded once: no report twice


async def test_a_new_sqlite_store_uses_write_ahead_logging(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"), _env_file=None
    )
    async with open_runtime(settings, upgrade=True):
        pass
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from kamiyo.db import alerts, dashboard, migrate, oauth, sanctions, stats
from kamiyo.db.engine import create_engine
from kamiyo.db.tables import Base

pytestmark = pytest.mark.anyio


def test_head_constant_matches_the_migration_files() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert scripts.get_current_head() == migrate.HEAD_REVISION


async def test_upgrade_creates_the_tables_and_downgrade_removes_them(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)

    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.HEAD_REVISION
        async with engine.connect() as connection:
            present = await connection.run_sync(tables)
        assert sanctions.SanctionedAddress.__tablename__ in Base.metadata.tables
        assert alerts.AlertDelivery.__tablename__ in Base.metadata.tables
        assert dashboard.DashboardSession.__tablename__ in Base.metadata.tables
        assert oauth.OAuthGrant.__tablename__ in Base.metadata.tables
        assert stats.IncidentMonthStats.__tablename__ in Base.metadata.tables
        assert set(Base.metadata.tables) <= present
        await migrate.upgrade(engine)  # a second upgrade is a no-op
        await migrate.downgrade(engine, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(tables) <= {"alembic_version"}
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.HEAD_REVISION
    finally:
        await engine.dispose()


async def test_sqlite_file_folder_is_created(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "kamiyo.db"
    engine = create_engine(f"sqlite+aiosqlite:///{target}")
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    assert target.exists()

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from kamiyo.db import alerts, dashboard, migrate, oauth, sanctions, stats
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.tables import Base
from kamiyo.runtime import SchemaOutOfDateError, prepare_database

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


async def test_a_database_migrated_by_a_newer_version_is_refused_saying_so(
    empty_database_url: str,
) -> None:
    """After a rollback of KAMIYO, its start must say why it cannot run (alembic's own error
    was a traceback about an unknown revision)."""
    engine = create_engine(empty_database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(SchemaOutOfDateError) as refused:
            await prepare_database(engine, session_factory(engine), upgrade=True)
        assert str(refused.value).startswith(
            f"database schema is at 0099, newer than this version's {migrate.HEAD_REVISION}"
        )
        assert await migrate.current_revision(engine) == "0099"  # left as it was
    finally:
        await engine.dispose()

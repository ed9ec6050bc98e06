"""What every surface (CLI, MCP server, web app) opens first: settings, engine, a ready store."""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kamiyo import closing
from kamiyo.config import Settings
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, ingest_lock, session_factory, setup_lock, use_wal
from kamiyo.intel.bundled import bundled_is_loaded, ensure_bundled
from kamiyo.intel.sanctions import ensure_snapshot, snapshot_is_loaded

log = logging.getLogger(__name__)


class SchemaOutOfDateError(RuntimeError):
    """The database schema is not the one this version needs, and may not be upgraded here."""


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


async def prepare_database(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], *, upgrade: bool
) -> None:
    """Bring the schema to head (or check it is there) and load the bundled dataset and
    sanctions list if new."""
    started = time.perf_counter()
    head = migrate.HEAD_REVISION
    if await migrate.current_revision(engine) == head:
        async with sessions() as session:
            if await bundled_is_loaded(session) and await snapshot_is_loaded(session):
                return  # the common case: nothing to do, no lock taken
    async with setup_lock(engine):
        await use_wal(engine)
        current = await migrate.current_revision(engine)
        if current is not None and migrate.newer_than_head(current):
            raise SchemaOutOfDateError(
                f"database schema is at {current}, newer than this version's {head}: a newer "
                "KAMIYO migrated it; run that version, or restore a backup taken before"
            )
        if current != head:
            if not upgrade:
                raise SchemaOutOfDateError(
                    f"database schema is at {current or 'nothing'}, this version needs {head}: "
                    "run `kamiyo db upgrade`"
                )
            await migrate.upgrade(engine)
            log.info("database schema upgraded from %s to %s", current or "nothing", head)
        # A live ingest elsewhere may be writing reports: the bundle waits its turn.
        async with ingest_lock(engine), sessions() as session:
            report = await ensure_bundled(session)
            sanctions = await ensure_snapshot(session)
    if sanctions:
        log.info("loaded the packaged sanctions list: %d addresses", sanctions.added)
    if report:
        log.info(
            "loaded the bundled reports (%s) in %.2f s: %d incidents",
            ", ".join(
                f"{name} {c.new + c.merged + c.updated}" for name, c in report.counts.items()
            ),
            time.perf_counter() - started,
            report.incidents,
        )


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, upgrade: bool | None = None
) -> AsyncIterator[Runtime]:
    """A ready runtime; ``upgrade`` overrides the settings' migrate-on-start choice."""
    engine = create_engine(settings.database.resolved_url, pool_size=settings.database.pool_size)
    sessions = session_factory(engine)
    try:
        await prepare_database(
            engine, sessions, upgrade=settings.migrate_on_start if upgrade is None else upgrade
        )
        yield Runtime(settings, engine, sessions)
    finally:
        await closing.within(
            "closing the database pool", settings.shutdown.close_s, engine.dispose()
        )

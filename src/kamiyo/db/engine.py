"""Async engine and session factory for SQLite (default) or PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


async def use_wal(engine: AsyncEngine) -> None:
    """Put a SQLite file in write-ahead-log mode (readers never wait for the writer).

    The mode is stored in the file, so this runs once, under the set-up lock: switching needs
    the file to itself, and racing connections would get "database is locked" without waiting.
    """
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:":
        async with engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA journal_mode = WAL")


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for calls that only read.

    PostgreSQL: in autocommit mode, so a search's one SELECT is one round trip instead of
    BEGIN, SELECT and ROLLBACK (three). Its default isolation, READ COMMITTED, takes a new
    snapshot for every statement anyway, so a read-only call sees what it saw before. SQLite:
    the usual sessions (its driver begins no transaction for a SELECT, and switching the mode
    on each checkout would cost thread hops instead of saving them).
    """
    if engine.dialect.name != "postgresql":
        return session_factory(engine)
    return session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# Arbitrary, fixed: the PostgreSQL advisory locks KAMIYO processes take for set-up and ingest.
_SETUP_LOCK_KEY = 0x4B414D49  # "KAMI"
_INGEST_LOCK_KEY = 0x4B414D4A
_SETUP_LOCK_WAIT_S = 300


def setup_lock(engine: AsyncEngine) -> AbstractAsyncContextManager[None]:
    """Let one process at a time migrate a database or load data into it.

    PostgreSQL: a session advisory lock. SQLite: a lock file beside the database file (SQLite's
    own locking does not cover DDL through the driver, so two first starts would both create
    the tables).
    """
    return _database_lock(engine, _SETUP_LOCK_KEY, "lock")


def ingest_lock(engine: AsyncEngine) -> AbstractAsyncContextManager[None]:
    """Let one ingest run at a time write into a database, across processes and hosts."""
    return _database_lock(engine, _INGEST_LOCK_KEY, "ingest.lock")


@asynccontextmanager
async def _database_lock(engine: AsyncEngine, lock_key: int, suffix: str) -> AsyncIterator[None]:
    url = engine.url
    if url.get_backend_name() == "postgresql":
        async with engine.connect() as connection:
            key = {"key": lock_key}
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
            await connection.commit()
            try:
                yield
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                await connection.commit()
    elif url.database and url.database != ":memory:":
        # Not thread-local: acquired in a worker thread, released on the event loop.
        lock = FileLock(f"{url.database}.{suffix}", timeout=_SETUP_LOCK_WAIT_S, thread_local=False)
        await asyncio.to_thread(lock.acquire)
        try:
            yield
        finally:
            lock.release()
    else:
        yield

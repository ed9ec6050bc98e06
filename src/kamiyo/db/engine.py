"""Async engine and session factory for SQLite (default) or PostgreSQL."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from kamiyo.db.pooling import DEFAULT_POOL_SIZE, POOL_RECYCLE_S

log = logging.getLogger(__name__)

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _rollback_if_open(
    dbapi_connection: Any, record: ConnectionPoolEntry, reset: PoolResetState
) -> None:
    """SQLite, a connection going back to the pool: roll back a transaction only if one is
    still open. A session's close has just rolled back (or committed) its own, and SQLAlchemy's
    reset would roll back once more, an aiosqlite thread hop a call for nothing. The driver
    knows whether a transaction is open without asking its thread."""
    if reset.terminate_only or not reset.asyncio_safe:
        return  # discarded, or outside the event loop: SQLAlchemy would not roll back either
    if getattr(record.driver_connection, "in_transaction", True):
        dbapi_connection.rollback()


async def use_wal(engine: AsyncEngine) -> None:
    """Put a SQLite file in write-ahead-log mode (readers never wait for the writer).

    The mode is stored in the file, so this runs once, under the set-up lock: switching needs
    the file to itself, and racing connections would get "database is locked" without waiting.
    """
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:":
        async with engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA journal_mode = WAL")


def create_engine(
    url: str, *, echo: bool = False, pool_size: int = DEFAULT_POOL_SIZE
) -> AsyncEngine:
    """The engine for ``url``, its pool keeping ``pool_size`` connections.

    PostgreSQL connections are not pinged on checkout (``pool_pre_ping``): that was one round
    trip more per call, 3 of 4 on a read. A connection the server dropped (a restart) fails on
    use instead; SQLAlchemy then invalidates it and every older one in the pool, and calls that
    only read try once more on a fresh one (``read_retrying``), so a restart costs no call an
    error. Writes are not retried: the caller decides (the meter keeps its batch for the next
    flush).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        if parsed.database and not memory:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # An in-memory database lives in its one connection (SQLAlchemy's StaticPool).
        sizing = {} if memory else {"pool_size": pool_size}
        engine = create_async_engine(url, echo=echo, pool_reset_on_return=None, **sizing)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _rollback_if_open)
        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, pool_recycle=POOL_RECYCLE_S)


def dropped_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is a statement that failed because its connection was gone (the server
    restarted, or cut it), which SQLAlchemy has invalidated: the same read on a new connection
    may well succeed."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def read_retrying(
    sessions: async_sessionmaker[AsyncSession], read: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """``read(session)`` in a new session, once more in another if its connection had been
    dropped. Only for work that writes nothing: a write that failed there may have committed."""
    try:
        async with sessions() as session:
            return await read(session)
    except DBAPIError as exc:
        if not dropped_connection(exc):
            raise
        log.info(
            "a pooled database connection was gone (%s); reading again",
            type(exc.orig).__name__,
        )
    async with sessions() as session:
        return await read(session)


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

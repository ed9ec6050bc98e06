"""SQLite connections back in the pool: rolled back only when a transaction is still open."""

from pathlib import Path

import pytest
from sqlalchemy import text

from kamiyo.db.engine import create_engine, session_factory

pytestmark = pytest.mark.anyio


async def test_a_read_rolls_back_once_and_an_open_write_is_still_undone(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}")
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
            await session.commit()
        driver_rollbacks = 0  # ROLLBACKs sent through aiosqlite's thread
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            aio = raw.driver_connection
            assert aio is not None
            original = aio.rollback

            async def counting() -> None:
                nonlocal driver_rollbacks
                driver_rollbacks += 1
                await original()

            aio.rollback = counting
        async with sessions() as session:  # a read: the session's rollback, none by the pool
            assert (await session.scalar(text("SELECT count(*) FROM t"))) == 0
        assert driver_rollbacks == 1
        # A transaction the pool finds open (begun on the driver's connection, past the
        # session) is rolled back on return, as SQLAlchemy's own reset did.
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            aio = raw.driver_connection
            assert aio is not None
            await aio.execute("INSERT INTO t VALUES (1)")
            assert aio.in_transaction
        assert driver_rollbacks >= 2
        async with sessions() as session:
            assert (await session.scalar(text("SELECT count(*) FROM t"))) == 0
    finally:
        await engine.dispose()

"""Calls that only read run in sessions that begin no transaction where that saves round trips
(``db.engine.read_session_factory``): PostgreSQL in autocommit mode, SQLite as usual."""

from typing import Any

import pytest
from sqlalchemy import event

from kamiyo.db.engine import read_session_factory
from kamiyo.intel.models import SearchQuery
from kamiyo.intel.search import search_incidents
from kamiyo.runtime import Runtime

pytestmark = pytest.mark.anyio


async def test_a_read_only_search_sends_only_selects(loaded_runtime: Runtime) -> None:
    engine = loaded_runtime.engine
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2].split(None, 1)[0].upper())

    readers = read_session_factory(engine)
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with readers() as session:
            found = await search_incidents(session, SearchQuery(query="euler"))
            connection = await session.connection()
            options = connection.sync_engine.get_execution_options()
            level = options.get("isolation_level")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert found.incidents, "the bundled data has Euler"
    # Only SELECTs, one per stage of the relevance search that ran (intel/search_plan.py).
    assert sent
    assert set(sent) == {"SELECT"}
    if engine.dialect.name == "postgresql":
        assert level == "AUTOCOMMIT"  # no BEGIN and ROLLBACK round trips around the SELECT
    else:
        assert readers.kw["bind"] is engine  # SQLite: the usual sessions


async def test_sessions_that_write_still_begin_a_transaction(loaded_runtime: Runtime) -> None:
    async with loaded_runtime.sessions() as session:
        connection = await session.connection()
        assert "isolation_level" not in connection.sync_engine.get_execution_options()
        assert session.in_transaction()

"""The outage reporter: a line as an outage starts, a count while it lasts, a line at its end."""

import logging
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc

from kamiyo.outages import MAX_MESSAGE, Outage, describe, is_busy, is_unreachable

LOGGER = "kamiyo.test_outages"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reporter(clock: Clock) -> Outage:
    return Outage("database", logger=logging.getLogger(LOGGER), clock=clock)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == LOGGER and r.levelno >= logging.INFO
    ]


def test_an_outage_is_one_line_at_its_start_a_count_while_it_lasts_and_one_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = reporter(clock)
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(1200):  # 1,200 refused requests in the first 10 s
            outage.failed(refused)
            clock.now += 10 / 1200
        clock.now += 0.01
        outage.failed(refused)  # the first after 10 s brings the count
        outage.count()
        clock.now += 2.5
        outage.recovered()
        outage.recovered()  # no outage in progress: nothing to say
    assert lines(caplog) == [
        (
            "ERROR",
            "database unavailable (ConnectionRefusedError: [Errno 111] Connect call failed "
            "('127.0.0.1', 5432)); requests that need it are refused as temporarily "
            "unavailable until it is back",
        ),
        ("WARNING", "database still unavailable: 1201 requests refused in the last 10 s"),
        ("WARNING", "database back after 12.5 s; 1202 requests refused in all"),
    ]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # at DEBUG, at the start only
    assert tracebacks[0].levelno == logging.DEBUG
    assert not outage.down


def test_a_new_outage_starts_its_counts_afresh(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = reporter(clock)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        outage.failed(TimeoutError("timed out"))
        outage.failed(TimeoutError("timed out"), counted=False)  # the meter's write: no request
        outage.recovered()
        outage.count()  # no outage: nothing counted
        outage.failed(ConnectionResetError("reset"))
        clock.now += 1
        outage.recovered()
    assert [message for _, message in lines(caplog)] == [
        "database unavailable (TimeoutError: timed out); requests that need it are refused as "
        "temporarily unavailable until it is back",
        "database back after 0.0 s; 1 requests refused in all",
        "database unavailable (ConnectionResetError: reset); requests that need it are refused "
        "as temporarily unavailable until it is back",
        "database back after 1.0 s; 1 requests refused in all",
    ]


def _wrapped(orig: Exception) -> BaseException:
    """What SQLAlchemy raises around a driver error, with the statement and its parameters."""
    try:
        raise orig
    except Exception as exc:
        return sqlalchemy.exc.DBAPIError.instance(
            "INSERT INTO usage_records VALUES ($1)", [("x" * 5000,)], exc, Exception
        )


def test_what_counts_as_unreachable() -> None:
    import asyncpg

    assert is_unreachable(ConnectionRefusedError(111, "refused"))
    assert is_unreachable(asyncpg.exceptions.CannotConnectNowError("starting up"))
    assert is_unreachable(asyncpg.exceptions.ConnectionDoesNotExistError("closed"))
    assert is_unreachable(_wrapped(OSError("reset")))
    # A bug or a bad statement is not an outage: those keep their own traceback.
    assert not is_unreachable(ValueError("bad"))
    assert not is_unreachable(_wrapped(ValueError("syntax error")))
    assert not is_unreachable(sqlalchemy.exc.IntegrityError("INSERT", {}, ValueError("dup")))


def test_the_message_is_the_drivers_and_bounded() -> None:
    described = describe(_wrapped(OSError("x" * 10_000)))
    assert described.startswith("OSError: xxx")
    assert "INSERT" not in described  # the statement and its parameters stay out
    assert len(described) <= len("OSError: ") + MAX_MESSAGE


def test_a_locked_sqlite_database_is_busy_not_an_outage(tmp_path: Path) -> None:
    """Another writer holding SQLite's lock past the busy timeout: the write waits for the
    next try (the meter logs one line, no traceback), and nothing is down."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    writer = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as raised:
        writer.execute("INSERT INTO t VALUES (1)")
    holder.rollback()
    wrapped = sqlalchemy.exc.OperationalError("INSERT INTO t VALUES (?)", (1,), raised.value)
    assert is_busy(raised.value)
    assert is_busy(wrapped)
    assert not is_unreachable(wrapped)
    assert not is_busy(sqlite3.OperationalError("no such table: t"))

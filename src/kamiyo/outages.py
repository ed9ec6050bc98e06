"""Outages of a dependency (the database, Redis), logged when they start, while they last and
when they end, instead of once per request.

While PostgreSQL was down every request that needed it wrote its own traceback: ~1,900 in 10 s
on one instance, 16 MB of log, with the one line that mattered (what failed, since when) lost
in them. An ``Outage`` writes three kinds of line:

- at the first failure, one ERROR naming the dependency, the exception's type and message and
  what the instance does meanwhile, with the failure's traceback: the only one of the outage;
- while it lasts, at most one WARNING every ``report_every_s`` seconds, with a count:
  ``database still unavailable: 812 requests refused in the last 10 s``;
- at the first success after it, one WARNING:
  ``database back after 12.3 s; 1873 requests refused in all``.

Whoever uses the dependency calls ``failed`` when it could not reach it (``is_unreachable``
tells such failures from bugs, which keep their own traceback), ``count`` for a request turned
away without trying again, and ``recovered`` when a use succeeded. The database has one
reporter per process, ``DATABASE``, shared by everything that reads or writes it (the gate, the
HTTP guard, the pipeline, the meter), so one outage is reported once, not once per place; the
meter writes every ``meter_flush_s``, so an outage is noticed, and its end too, within about a
second even with no traffic. A process serves one instance, so "per process" is "per instance".
"""

import logging
import math
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy.exc

log = logging.getLogger(__name__)

REPORT_EVERY_S = 10.0
MAX_MESSAGE = 300  # characters of an exception's message in a log line (SQL errors run long)

# What says a server could not be reached or went away, rather than that a statement was wrong:
# the connection (refused, reset, timed out), a server shutting down or starting, a pool that
# waited too long for a connection.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, TimeoutError, socket errors
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # the pool's: no connection came free in time
)


def _driver(module: str) -> Any:
    """A driver's module if this process loaded it: its errors can only come from a loaded
    driver, and a process that never uses one (``kamiyo search`` on SQLite: no asyncpg, no
    Redis) does not pay for importing it here."""
    return sys.modules.get(module)


def _unreachable() -> tuple[type[BaseException], ...]:
    """``_UNREACHABLE`` and the drivers' own words for the same, for the drivers in use."""
    found = _UNREACHABLE
    asyncpg = _driver("asyncpg")
    if asyncpg is not None:
        found += (
            asyncpg.PostgresConnectionError,  # class 08: connection lost or refused
            asyncpg.exceptions.OperatorInterventionError,  # 57P: shutting down, starting up
            asyncpg.exceptions.TooManyConnectionsError,
        )
    redis_errors = _driver("redis.exceptions")
    if redis_errors is not None:
        found += (redis_errors.ConnectionError, redis_errors.TimeoutError)
    return found


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver error SQLAlchemy wraps, and what they were raised from."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen or len(seen) >= 8:
            continue
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None]
        pending.append(error.__cause__)  # raise ... from: the driver's error under ours


def _disk_full(error: BaseException) -> bool:
    """A database whose disk is full: it reads, but no write succeeds until there is room.
    Each write retried (the meter's, every second) would otherwise log its own traceback, SQL
    and parameters included, for as long as the disk stays full."""
    asyncpg = _driver("asyncpg")
    if asyncpg is not None and isinstance(error, asyncpg.exceptions.DiskFullError):  # 53100
        return True
    return (
        isinstance(error, sqlite3.Error)
        and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def is_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked": another writer held the lock past the busy timeout. The
    write is retried as it stands; nothing is wrong with it or with the database."""
    return any(
        isinstance(error, sqlite3.OperationalError)
        and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
        for error in _causes(exc)
    )


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says a dependency could not be reached, or cannot take writes for a
    full disk (an outage, not a bug)."""
    for error in _causes(exc):
        if isinstance(error, _unreachable()) or _disk_full(error):
            return True
        if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
            return True
    return False


def root_cause(exc: BaseException) -> BaseException:
    """The driver's own error where SQLAlchemy wrapped one: its message carries no SQL."""
    orig = getattr(exc, "orig", None)
    if isinstance(exc, sqlalchemy.exc.StatementError) and isinstance(orig, BaseException):
        return orig.__cause__ or orig
    return exc


def describe(exc: BaseException) -> str:
    """``Type: message``, bounded, for a log line."""
    cause = root_cause(exc)
    message = " ".join(str(cause).split())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


class Outage:
    """One dependency's outages, as this process sees them."""

    def __init__(
        self,
        dependency: str,
        *,
        consequence: str = "requests that need it are refused as temporarily unavailable",
        counted: str = "requests refused",
        report_every_s: float = REPORT_EVERY_S,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dependency = dependency
        self.consequence = consequence
        self.counted = counted
        self.report_every_s = report_every_s
        self._log = logger
        self._clock = clock
        self._since: float | None = None  # when the current outage was first seen
        self._reported_at = -math.inf
        self._in_all = 0
        self._since_report = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, *, counted: bool = True) -> None:
        """A use of the dependency failed; ``counted``: a request was turned away for it."""
        now = self._clock()
        if self._since is None:
            self._since, self._reported_at = now, now
            self._in_all = self._since_report = 0
            self._log.error(
                "%s unavailable (%s); %s until it is back",
                self.dependency,
                describe(exc),
                self.consequence,
            )
            # Where it was first seen, for whoever needs it: a connection refused says it all.
            cause = root_cause(exc)
            self._log.debug("%s: the first failure", self.dependency, exc_info=cause)
        self._tally(now, counted)

    def count(self) -> None:
        """A request turned away during the outage without trying the dependency again."""
        if self._since is not None:
            self._tally(self._clock(), True)

    def recovered(self) -> None:
        """A use of the dependency succeeded: an outage in progress is over."""
        if self._since is None:
            return
        lasted = self._clock() - self._since
        self._log.warning(
            "%s back after %.1f s; %d %s in all",
            self.dependency,
            lasted,
            self._in_all,
            self.counted,
        )
        self._since = None

    def _tally(self, now: float, counted: bool) -> None:
        if counted:
            self._in_all += 1
            self._since_report += 1
        if now - self._reported_at >= self.report_every_s:
            self._log.warning(
                "%s still unavailable: %d %s in the last %.0f s",
                self.dependency,
                self._since_report,
                self.counted,
                now - self._reported_at,
            )
            self._reported_at, self._since_report = now, 0


# The database every instance reads and writes (PostgreSQL, or a SQLite file).
DATABASE = Outage("database")

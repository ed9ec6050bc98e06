"""Changes to what a credential may do apply on the next call, on every instance.

The gate remembers each credential's account and tier for ``tier_cache_s`` seconds, so most
calls read nothing. Every change that takes rights away or alters them (a key or token revoked,
an account disabled or enabled, a tier set by hand, a Stripe change to a subscription) calls
``bump`` in the transaction that makes it: the account's ``credentials_version`` goes up by
one. A remembered identity keeps the version its look-up read (in the same statement as the
account, so never newer than the state it saw), and on every call the gate asks ``moved``
whether the account's version is past it; if so it looks the credential up again.

Where the version is read on each call:

- with Redis (``KAMIYO_REDIS_URL``): one GET of ``{prefix}:credentials:{account_pk}``. The
  writer sets that key after its commit (``announce``), and only ever upwards (a script keeps
  the highest version, so two writers finishing in either order leave the newer one). A cached
  version below the key's is stale. If Redis cannot be read, the database is read instead for
  the next second (correct, slower). The writer announces before its command returns, so the
  very next call anywhere sees the change. If the writer cannot reach Redis it says so, and
  instances catch up when their cache entry expires (``tier_cache_s``). Processes that change
  credentials (servers, ``kamiyo`` commands) must share the servers' ``KAMIYO_REDIS_URL``.
- without Redis: a primary-key read of ``accounts.credentials_version``. That holds for any
  number of instances on one database, and for a single server whose changes come from the
  CLI in another process (an in-process invalidation would miss those).
- on SQLite, whatever else is configured: the database files say whether anything was
  committed since this account's version was last read (their size, times and the WAL
  header's salts, a few microseconds of ``stat``). Only then is the version read again, from
  the database itself (committed, so never behind a writer that has not announced yet). A
  bump is a commit, so it cannot be missed; other writes (the meter's batches) only cause an
  extra read. This keeps the per-call cost at a ``stat`` instead of a read through
  aiosqlite's thread (~1 ms a call, measured by ``bench.gate``).

Why not invalidation messages over pub/sub: delivery is fire-and-forget and asynchronous, so a
message still in flight when ``kamiyo keys revoke`` returns lets the next call through, and a
reconnect would have to clear every cache. A version read is one small round trip and cannot
miss. Measured in process on a loaded 2-core machine (load ~7), per call: a cached identity
plus the Redis GET ~250-340 µs, plus the database read ~480 µs (PostgreSQL) to ~740 µs
(SQLite), against ~2-4 ms for the full look-up the cache saves. Unloaded these are several
times smaller; the Redis GET is one loopback round trip.

Time alone still changes a tier (a past-due grace running out): that waits for the cache
entry's ``tier_cache_s`` expiry, as before.
"""

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from kamiyo.config import Settings
from kamiyo.db.tables import Account
from kamiyo.outages import Outage

# redis is imported where Redis is configured: a process without it (the command line, a
# single instance) does not pay ~0.1 s to import it.
if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)

T = TypeVar("T")

# Where a SQLite WAL header keeps its checkpoint sequence and salts (they change on a reset).
WAL_HEADER = slice(12, 24)
REDIS_TIMEOUT_S = 0.5  # a call waits at most this long for Redis before reading the database
REDIS_RETRY_S = 1.0  # after a failure, Redis is tried again this much later
_PENDING = "kamiyo.credentials_bumped"  # session.info: accounts bumped in this transaction

# Set the key to ARGV[1] unless it already holds a higher version.
_RAISE_TO = """
local held = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > held then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


def _key(prefix: str, account_pk: int) -> str:
    return f"{prefix}:credentials:{account_pk}"


def _redis_url(url: str) -> str:
    return url.removeprefix("async+")  # the limits library's spelling, accepted there too


@dataclass(frozen=True, slots=True)
class Remembered(Generic[T]):
    """A look-up's result as the gate caches it."""

    result: T
    # None: nothing an operator can change makes it valid (an unknown or revoked key, a bad
    # token); it stays until the cache entry expires.
    account_pk: int | None = None
    version: int = 0


async def bump(session: AsyncSession, account_pk: int) -> None:
    """In the caller's transaction: what this account's credentials may do has changed."""
    await session.execute(
        update(Account)
        .where(Account.pk == account_pk)
        .values(credentials_version=Account.credentials_version + 1)
        .execution_options(synchronize_session=False)
    )
    session.info.setdefault(_PENDING, set()).add(account_pk)


async def commit(session: AsyncSession, settings: Settings) -> bool:
    """Commit, then announce the accounts ``bump`` saw; False if Redis could not be told."""
    pending: set[int] = session.info.pop(_PENDING, set())
    await session.commit()
    return await announce(session, settings, pending)


async def announce(session: AsyncSession, settings: Settings, account_pks: Iterable[int]) -> bool:
    """After the commit: tell every instance (through Redis) the accounts' new versions.

    Reads the committed versions, so announcing again, or for a change that rolled back, is
    harmless. Without Redis there is nothing to do (instances read the database). False when
    Redis is configured but could not be reached: the change then applies within
    ``tier_cache_s`` instead of on the next call.
    """
    wanted = sorted(set(account_pks))
    if not settings.redis.url or not wanted:
        return True
    rows = await session.execute(
        select(Account.pk, Account.credentials_version).where(Account.pk.in_(wanted))
    )
    import redis.asyncio
    from redis.exceptions import RedisError

    client = redis.asyncio.Redis.from_url(
        _redis_url(settings.redis.url),
        socket_timeout=REDIS_TIMEOUT_S * 4,  # a command, not a call: may wait a little longer
        socket_connect_timeout=REDIS_TIMEOUT_S * 4,
    )
    try:
        raise_to = client.register_script(_RAISE_TO)
        for pk, version in rows:  # usually one account
            await raise_to(keys=[_key(settings.redis.prefix, pk)], args=[version])
    except RedisError as exc:
        log.error(
            "Redis unreachable (%s): instances learn of the credential change on account(s) %s "
            "within %s s instead of on the next call",
            exc,
            ", ".join(map(str, wanted)),
            settings.auth.tier_cache_s,
        )
        return False
    finally:
        await client.aclose()
    return True


MAX_SEEN = 100_000  # accounts whose file state is remembered (cleared when full)


def _sqlite_file(sessions: async_sessionmaker[AsyncSession]) -> Path | None:
    url = sessions.kw["bind"].url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


class FileState:
    """What changes whenever a transaction commits to a SQLite database: the size and change
    times of the file and of its WAL, and the WAL header's checkpoint sequence and salts (new
    on every WAL reset, which may leave the size and, within a clock tick, the times alike).

    The WAL stays open between reads (a ``pread`` of its header instead of an open and a
    close), and is opened again when its inode changes (SQLite deletes and recreates it).
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self._wal = database.with_name(database.name + "-wal")
        self._fd: int | None = None
        self._inode = -1

    def read(self) -> tuple[int, ...]:
        state: list[int] = []
        for path in (self.database, self._wal):
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                state += [0, 0, 0, 0]
                continue
            state += [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        state.append(self._wal_header(state[4]))
        return tuple(state)

    def _wal_header(self, inode: int) -> int:
        if inode != self._inode:
            self.close()
            if inode:
                with contextlib.suppress(FileNotFoundError):
                    self._fd = os.open(self._wal, os.O_RDONLY)
                    self._inode = inode
        if self._fd is None:
            return 0
        return int.from_bytes(os.pread(self._fd, 24, 0)[WAL_HEADER], "big")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._inode = None, -1


class CredentialVersions:
    """The gate's side: has an account's credentials version moved past a remembered one?"""

    def __init__(self, settings: Settings) -> None:
        self._prefix = settings.redis.prefix
        self._redis: redis.asyncio.Redis | None = None
        if settings.redis.url:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(
                _redis_url(settings.redis.url),
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
        self._failed_at = -math.inf
        self._redis_outage = Outage(
            "Redis for credential checks",
            consequence="reading credential versions from the database",
            counted="credential checks read from the database",
            logger=log,
        )
        self._connection: AsyncConnection | None = None
        self._lock = asyncio.Lock()
        # SQLite only: the database files, and per account their state when its version was
        # last read and found current.
        self._files: FileState | None = None
        self._seen: dict[int, tuple[int, ...]] = {}
        # Per account, when the latest version read began and what it found.
        self._last_read: dict[int, tuple[int, int | None]] = {}

    async def moved(
        self, sessions: async_sessionmaker[AsyncSession], account_pk: int, version: int
    ) -> bool:
        engine = sessions.kw["bind"]
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            return await self._moved_in_file(
                sessions, Path(engine.url.database), account_pk, version
            )
        if self._redis is not None and time.monotonic() - self._failed_at < REDIS_RETRY_S:
            self._redis_outage.count()
        elif self._redis is not None:
            from redis.exceptions import RedisError  # loaded with the client

            try:
                held = await self._redis.get(_key(self._prefix, account_pk))
            except RedisError as exc:
                self._failed_at = time.monotonic()
                self._redis_outage.failed(exc)
            else:
                self._redis_outage.recovered()
                # No key: nothing announced since Redis started (or it lost its data).
                return held is not None and int(held) > version
        return await self._read(sessions, account_pk) != version  # None: the account is gone

    async def _moved_in_file(
        self,
        sessions: async_sessionmaker[AsyncSession],
        database: Path,
        account_pk: int,
        version: int,
    ) -> bool:
        """SQLite: read the version again only when something was committed since last time."""
        if self._files is None or self._files.database != database:
            self._files = FileState(database)
        before = self._files.read()  # taken first: a commit during the read shows next time
        if self._seen.get(account_pk) == before:
            return False
        moved = await self._read(sessions, account_pk) != version
        if moved:
            self._seen.pop(account_pk, None)  # the caller looks it up again
        else:
            if len(self._seen) >= MAX_SEEN:
                self._seen.clear()
            self._seen[account_pk] = before
        return moved

    async def _read(
        self, sessions: async_sessionmaker[AsyncSession], account_pk: int
    ) -> int | None:
        """The database's version, on a connection of our own in autocommit mode.

        A session per check cost ~0.8-1.3 ms (a pool checkout, a transaction begun and rolled
        back); one held connection, each statement its own transaction (so it always sees the
        latest commit, and holds no snapshot or lock between calls), ~0.2 ms. Checks take
        turns on it: a connection runs one statement at a time.
        """
        statement = select(Account.credentials_version).where(Account.pk == account_pk)
        asked = time.monotonic_ns()
        async with self._lock:
            # Concurrent calls of one account queue here; a read that began after this call
            # asked saw every commit made before it, so it answers this call too (one read
            # for the queue instead of one each: two a call over HTTP, guard and gate).
            last = self._last_read.get(account_pk)
            if last is not None and last[0] > asked:
                return last[1]
            for attempt in (1, 2):
                if self._connection is None:
                    engine = sessions.kw["bind"]
                    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
                    self._connection = await auto.connect()
                try:
                    started = time.monotonic_ns()
                    found: int | None = await self._connection.scalar(statement)
                    if len(self._last_read) >= MAX_SEEN:
                        self._last_read.clear()
                    self._last_read[account_pk] = (started, found)
                    return found
                except DBAPIError:
                    await self._drop_connection()  # e.g. the server restarted: one new try
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except DBAPIError:
                log.debug("closing a broken credentials-check connection failed", exc_info=True)

    async def close(self) -> None:
        await self._drop_connection()
        if self._files is not None:
            self._files.close()
        if self._redis is not None:
            await self._redis.aclose()

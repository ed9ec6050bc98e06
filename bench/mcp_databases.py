"""The databases ``bench/mcp.py`` runs KAMIYO on: the SQLite file, a fresh PostgreSQL database
on a shared server (created for the run, dropped afterwards), and the usage records each holds.
"""

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.engine import make_url

from bench.kamiyo_server import BENCH_EMAIL


@dataclass(frozen=True)
class Database:
    """A prepared database (migrated, bundled data loaded) and the enterprise key in it."""

    location: str  # a SQLite file, or a PostgreSQL URL
    key: str
    env: dict[str, str] = field(default_factory=dict)


USAGE_SQL = "SELECT status, count(*) FROM usage_records GROUP BY status"


def usage_by_status(database: str) -> Counter[str]:
    """The usage records the servers wrote so far, by status (ok, rate_limited, ...), in a
    SQLite file or a PostgreSQL database (a URL)."""
    if database.startswith("postgresql"):
        return asyncio.run(_postgres_usage(database))
    with sqlite3.connect(database) as db:
        return Counter({str(status): int(count) for status, count in db.execute(USAGE_SQL)})


async def _postgres_usage(url: str) -> Counter[str]:
    connection = await asyncpg.connect(_plain(url))
    try:
        return Counter({str(s): int(n) for s, n in await connection.fetch(USAGE_SQL)})
    finally:
        await connection.close()


def _plain(url: str) -> str:
    """asyncpg's own URL form (no ``+asyncpg`` driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class PostgresDatabase:
    """A fresh database on a shared server for one benchmark run; ``drop`` removes it."""

    admin_url: str
    name: str = field(default_factory=lambda: f"kamiyo_bench_mcp_{uuid.uuid4().hex[:10]}")

    @property
    def url(self) -> str:
        return make_url(self.admin_url).set(database=self.name).render_as_string(False)

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(_plain(self.admin_url), timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def create(self) -> bool:
        """Create it; False when the server does not answer."""
        try:
            asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        return True

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def kamiyo_cli(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-m", "kamiyo", *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout


def prepare(env: dict[str, str], location: str, extra: dict[str, str] | None = None) -> Database:
    """Migrate and load the database once, so no run pays for the first load; an enterprise
    key in it."""
    extra = extra or {}
    kamiyo_cli(env | extra, "db", "upgrade")
    kamiyo_cli(env | extra, "accounts", "create", BENCH_EMAIL, "--tier", "enterprise")
    key = kamiyo_cli(env | extra, "keys", "create", BENCH_EMAIL, "--name", "bench").strip()
    return Database(location, key, extra)

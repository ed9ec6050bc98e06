"""Real databases for the tests: a fresh SQLite file, and a fresh PostgreSQL database.

PostgreSQL comes from ``KAMIYO_TEST_POSTGRES_URL`` (default: the local server, trust auth). Each
run creates its own databases and drops them afterwards. Where the server cannot be reached the
PostgreSQL cases are skipped with the reason, except under CI (``CI`` set), where that is an error.

Everything a test makes is its own, so the suite runs in parallel (pytest-xdist): databases and
Redis key prefixes carry a random name, servers take ports from ``free_port`` (a block of its own
per xdist worker), files go under ``tmp_path``. Tests that start processes are marked
``process`` automatically (tests/processes.py).
"""

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import outages
from kamiyo.config import DatabaseSettings, Settings, get_settings
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.runtime import Runtime, open_runtime
from tests import cpu_report, processes

# No test reads a chain through the public default explorers: traffic stays on loopback (a test
# that reads histories names its own explorer). Set here too for the session-wide fixtures.
NO_PUBLIC_EXPLORERS = {"KAMIYO_EXPLORER_DEFAULTS": "false"}
os.environ.update(NO_PUBLIC_EXPLORERS)

POSTGRES_ADMIN_URL = os.environ.get(
    "KAMIYO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]
# The xdist worker ("gw0", "gw1", ...) or "main": named in what a test leaves on shared servers.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-report",
        metavar="FILE",
        help="append each test's CPU seconds, with its child processes', to FILE "
        "(python -m tests.cpu_report FILE sums them)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(processes.Watch(config), "kamiyo-process-watch")
    cpu_report.register(config)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups it adds
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    processes.own_node_ids(items)
    processes.classify(config, items)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's environment, .env file or data folder."""
    for name in list(os.environ):
        if name.startswith("KAMIYO_") and name != "KAMIYO_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("KAMIYO_DATA_DIR", str(tmp_path / "data"))
    for name, value in NO_PUBLIC_EXPLORERS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)


async def _postgres_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


class PostgresDatabases:
    """Creates throw-away databases on the test server and drops them at the end."""

    def __init__(self) -> None:
        self.created: list[str] = []

    async def create(self, template: str | None = None) -> str:
        """A new database: empty, or a copy of the database named ``template``."""
        name = f"kamiyo_test_{WORKER}_{uuid.uuid4().hex[:12]}"
        copied = f' TEMPLATE "{template}"' if template else ""
        admin = await _postgres_admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"{copied}')
        finally:
            await admin.close()
        self.created.append(name)
        url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        # Each DROP DATABASE waits for a checkpoint; dropped side by side they share them, which
        # makes the end of a run (of every xdist worker) several times shorter.
        names = list(self.created)
        width = min(DROP_CONNECTIONS, len(names))
        await asyncio.gather(*(_drop(names[i::width]) for i in range(width)))


DROP_CONNECTIONS = 6


async def _drop(names: list[str]) -> None:
    admin = await _postgres_admin()
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def postgres_databases(anyio_backend: str) -> AsyncIterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    await databases.drop_all()


async def new_database_url(
    backend: str, folder: Path, postgres_databases: PostgresDatabases
) -> str:
    if backend == "postgresql":
        return await postgres_databases.create()
    return f"sqlite+aiosqlite:///{folder / f'kamiyo-{uuid.uuid4().hex[:8]}.db'}"


@pytest.fixture(scope="session", params=BACKENDS)
async def loaded_runtime(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
) -> AsyncIterator[Runtime]:
    """A store with the bundled dataset, shared by the read-only tests of one backend."""
    url = await new_database_url(request.param, tmp_path_factory.mktemp("db"), postgres_databases)
    async with open_runtime(
        Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None),
        upgrade=True,
    ) as rt:
        yield rt


@pytest.fixture
async def session(loaded_runtime: Runtime) -> AsyncIterator[AsyncSession]:
    async with loaded_runtime.sessions() as session:
        yield session


@pytest.fixture(params=BACKENDS)
async def empty_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> str:
    """A fresh, empty database of each backend, for tests that write."""
    return await new_database_url(request.param, tmp_path, postgres_databases)


@pytest.fixture
def sessions(loaded_runtime: Runtime) -> async_sessionmaker[AsyncSession]:
    return loaded_runtime.sessions


# Loggers whose levels configure_logging sets (kamiyo.observability).
_CONFIGURED_LOGGERS = ("", "alembic", "httpx", "httpx2", "httpcore", "httpcore2", "stripe")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """In-process CLI tests run configure_logging, which replaces the root handlers with one
    on that test's stderr: later tests on the worker would log to a closed stream."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in _CONFIGURED_LOGGERS}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def postgres_url_for_cli(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create()


class MigratedTemplates:
    """Databases of each backend prepared once per worker, copied for each test that wants one:
    migrated to head, and migrated with the bundled dataset loaded (what ``kamiyo db upgrade``
    leaves, and what a server's start-up would otherwise do for every test).

    Migrating a new database runs every migration (about a second on PostgreSQL) and loading
    the bundle more; a copy is the same schema, revision and rows in a tenth of that:
    PostgreSQL's ``CREATE DATABASE … TEMPLATE``, a file copy for SQLite. Migrations and loading
    themselves are tested from empty databases (``empty_database_url``), never from these.
    """

    def __init__(self, databases: PostgresDatabases, folder: Path) -> None:
        self.databases = databases
        self.folder = folder
        self._templates: dict[tuple[str, bool], str] = {}  # (backend, loaded): name or path

    async def new_url(self, backend: str, folder: Path, *, loaded: bool = False) -> str:
        template = self._templates.get((backend, loaded))
        if template is None:
            template = await self._prepare(backend, loaded)
            self._templates[(backend, loaded)] = template
        if backend == "postgresql":
            return await self.databases.create(template=template)
        copy = folder / f"kamiyo-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(template, copy)
        return f"sqlite+aiosqlite:///{copy}"

    async def _prepare(self, backend: str, loaded: bool) -> str:
        if backend == "postgresql":
            url = await self.databases.create()
        else:
            url = f"sqlite+aiosqlite:///{self.folder / f'template-{int(loaded)}.db'}"
        if loaded:
            settings = Settings(
                database=DatabaseSettings(url=url), environment="test", _env_file=None
            )
            async with open_runtime(settings, upgrade=True):
                pass
        else:
            engine = create_engine(url)
            try:
                await migrate.upgrade(engine)
            finally:
                await engine.dispose()
        # No connection is left open: PostgreSQL copies only a template nobody uses, and
        # SQLite's last connection has folded its journal into the file.
        database = make_url(url).database
        assert database is not None
        return database


@pytest.fixture(scope="session")
def migrated_templates(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> MigratedTemplates:
    return MigratedTemplates(postgres_databases, tmp_path_factory.mktemp("templates"))


@pytest.fixture(params=BACKENDS)
async def migrated_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> str:
    """A fresh database of each backend, migrated to head, with no data loaded."""
    return await migrated_templates.new_url(request.param, tmp_path)


@pytest.fixture(params=BACKENDS)
async def loaded_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> str:
    """A fresh database of each backend, migrated and loaded with the bundled dataset."""
    return await migrated_templates.new_url(request.param, tmp_path, loaded=True)


@pytest.fixture
async def migrated_sessions(
    migrated_database_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh database of each backend, migrated to head, with no data loaded."""
    engine = create_engine(migrated_database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def migrated_session(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with migrated_sessions() as session:
        yield session


REDIS_TEST_URL = os.environ.get("KAMIYO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_settings() -> Iterator[dict[str, str]]:
    """RedisSettings fields for the local Redis with a key prefix of this test's own; its keys
    go after."""
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        reason = f"Redis unreachable at {REDIS_TEST_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    prefix = f"kamiyo_test_{WORKER}_{uuid.uuid4().hex[:12]}"
    try:
        yield {"url": REDIS_TEST_URL, "prefix": prefix}
    finally:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def database_outage(monkeypatch: pytest.MonkeyPatch) -> outages.Outage:
    """The test's own reporter of database outages (``kamiyo.outages.DATABASE``): it starts
    with no outage left over from another test, and the test can read what it saw."""
    fresh = outages.Outage("database")
    monkeypatch.setattr(outages, "DATABASE", fresh)
    return fresh

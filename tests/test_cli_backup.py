"""``kamiyo backup`` and ``kamiyo restore``: a consistent SQLite copy under a live writer, and
the refusals (PostgreSQL, existing paths, foreign files, newer schemas, a serving instance)."""

import datetime as dt
import shutil
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from kamiyo.cli import app
from kamiyo.config import DatabaseSettings, Settings, get_settings
from kamiyo.db.migrate import HEAD_REVISION
from kamiyo.runtime import open_runtime
from tests.mcpserver.conftest import running_http_server

runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KAMIYO database with the bundled data, made once and copied by each test."""
    path = tmp_path_factory.mktemp("template") / "kamiyo.db"

    async def make() -> None:
        settings = Settings(
            database=DatabaseSettings(url=f"sqlite:///{path}"), environment="test", _env_file=None
        )
        async with open_runtime(settings, upgrade=True):
            pass

    anyio.run(make)
    return path


@pytest.fixture
def database(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "live" / "kamiyo.db"
    path.parent.mkdir()
    shutil.copy(template, path)
    monkeypatch.setenv("KAMIYO_DATABASE_URL", f"sqlite:///{path}")
    return path


def _kamiyo(*args: str) -> tuple[int, str]:
    get_settings.cache_clear()  # a test may point KAMIYO_DATABASE_URL elsewhere between calls
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


class Writer(threading.Thread):
    """Inserts rows, one transaction each, and keeps a running total in the same transaction:
    a consistent copy has exactly as many rows as its total says."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.connection = sqlite3.connect(path, check_same_thread=False, timeout=10)
        self.connection.execute("CREATE TABLE probe (n INTEGER)")
        self.connection.execute("CREATE TABLE probe_total (total INTEGER)")
        self.connection.execute("INSERT INTO probe_total VALUES (0)")
        self.connection.commit()
        self.stop = threading.Event()
        self.commits: list[float] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            with self.connection:
                self.connection.execute("INSERT INTO probe VALUES (?)", (n,))
                self.connection.execute("UPDATE probe_total SET total = ?", (n,))
            self.commits.append(time.monotonic())
        self.connection.close()


@pytest.fixture
def writer(database: Path) -> Iterator[Writer]:
    thread = Writer(database)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop.set()
        thread.join(timeout=10)


def test_backup_while_a_writer_inserts_is_consistent(
    database: Path, writer: Writer, tmp_path: Path
) -> None:
    while len(writer.commits) < 50:  # the writer is under way
        time.sleep(0.01)
    copy = tmp_path / "copy.db"
    started = time.monotonic()
    code, output = _kamiyo("backup", str(copy))
    ended = time.monotonic()
    assert code == 0, output
    assert f"Backed up {database} to {copy}" in output
    assert f"schema {HEAD_REVISION}" in output
    # The writer was not held up: it committed while the copy was made.
    assert any(started <= at <= ended for at in writer.commits)
    with sqlite3.connect(copy) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute("SELECT count(*), max(n) FROM probe").fetchone()
        (total,) = connection.execute("SELECT total FROM probe_total").fetchone()
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (
            HEAD_REVISION,
        )
    assert rows == (total, total)  # one moment's database: no half transaction
    assert total > 0
    assert _count(copy, "incidents") == _count(database, "incidents") > 1000
    writer.stop.set()
    writer.join(timeout=10)
    assert _count(database, "probe") > total  # it went on after the copy's moment


def test_backup_refuses_an_existing_path_unless_forced(database: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_text("keep me")
    code, output = _kamiyo("backup", str(copy))
    assert code == 2
    assert f"{copy} exists" in output
    assert "--force" in output
    assert copy.read_text() == "keep me"
    code, output = _kamiyo("backup", str(copy), "--force")
    assert code == 0, output
    assert _count(copy, "incidents") > 1000
    assert not list(tmp_path.glob(".*partial"))
    code, output = _kamiyo("backup", str(tmp_path / "missing" / "copy.db"))
    assert code == 2
    assert "missing is not a folder" in output
    code, output = _kamiyo("backup", str(tmp_path), "--force")
    assert code == 2
    assert "is a folder" in output


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_postgresql_is_pointed_to_pg_dump(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAMIYO_DATABASE_URL", "postgresql://kamiyo:hunter2@db.internal/kamiyo")
    code, output = _kamiyo(command, str(tmp_path / "copy.db"))
    assert code == 2
    assert "pg_dump" in output
    assert "pg_restore" in output
    assert "hunter2" not in output


def test_restore_brings_the_copy_back(database: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    assert _kamiyo("backup", str(copy))[0] == 0
    incidents = _count(database, "incidents")
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM incident_names")
    code, output = _kamiyo("restore", str(copy))
    assert code == 2
    assert "--force" in output
    assert _count(database, "incident_names") == 0
    code, output = _kamiyo("restore", str(copy), "--force")
    assert code == 0, output
    assert f"Restored {database} from {copy} (schema {HEAD_REVISION})" in output
    assert _count(database, "incident_names") > 0
    assert _count(database, "incidents") == incidents


def test_restore_into_a_new_place(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy.db"
    assert _kamiyo("backup", str(copy))[0] == 0
    fresh = tmp_path / "new" / "kamiyo.db"
    monkeypatch.setenv("KAMIYO_DATABASE_URL", f"sqlite:///{fresh}")
    code, output = _kamiyo("restore", str(copy))
    assert code == 0, output
    assert _count(fresh, "incidents") == _count(database, "incidents")


def test_restore_refuses_what_is_not_a_kamiyo_database(database: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all" * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE things (x)")
    for path in (text, other):
        code, output = _kamiyo("restore", str(path), "--force")
        assert code == 2
        assert f"{path} is not a KAMIYO database" in output
    assert _kamiyo("restore", str(tmp_path / "missing.db"))[1].endswith("is not a file")


def test_restore_refuses_a_newer_schema(database: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    assert _kamiyo("backup", str(copy))[0] == 0
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    code, output = _kamiyo("restore", str(copy), "--force")
    assert code == 2
    assert f"schema 9999, newer than this version's {HEAD_REVISION}" in output


def test_restore_refuses_while_an_instance_serves(database: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    assert _kamiyo("backup", str(copy))[0] == 0
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO serving_instances (id, host, pid, started_at, flush_s, last_flush_at) "
            "VALUES ('abc123', 'web-1', 4242, ?, 1.0, ?)",
            (now.isoformat(sep=" "), now.isoformat(sep=" ")),
        )
    code, output = _kamiyo("restore", str(copy), "--force")
    assert code == 1
    assert "abc123 (web-1, pid 4242)" in output
    assert "stop them first" in output
    # Once it stopped cleanly, the restore goes ahead.
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE serving_instances SET stopped_at = last_flush_at")
    assert _kamiyo("restore", str(copy), "--force")[0] == 0


def test_with_a_real_server_backup_serves_on_and_restore_waits_for_it(
    database: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.db"
    env = {"KAMIYO_DATABASE_URL": f"sqlite:///{database}"}
    with running_http_server(tmp_path, [], env) as url:
        code, output = _kamiyo("backup", str(copy))
        assert code == 0, output
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            assert response.status == 200  # served on while and after the copy was made
        code, output = _kamiyo("restore", str(copy), "--force")
        assert code == 1
        assert "stop them first" in output  # its meter's heartbeat names it as serving
    # Stopped cleanly (SIGTERM): its row says so, and the restore goes ahead.
    code, output = _kamiyo("restore", str(copy), "--force")
    assert code == 0, output
    assert _count(database, "incidents") > 1000

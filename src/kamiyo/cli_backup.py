"""``kamiyo backup PATH`` and ``kamiyo restore PATH``: the SQLite store, copied consistently.

The copy goes through SQLite's online backup API (Python's ``sqlite3.Connection.backup``) in a
single step, that is, inside one read transaction: with the write-ahead log KAMIYO turns on,
writers go on meanwhile and the copy is the database as of that transaction's start. (A copy in
several steps restarts whenever another connection writes, so under steady traffic it could
never finish; one step cannot show a progress bar, so a summary follows instead.)

PostgreSQL is refused with a pointer to ``pg_dump``/``pg_restore`` (docs/deploy.md). Restore
overwrites the configured database, so it wants the server stopped: it refuses while the
database records an instance that still writes usage (access/instances.py), and a file that is
not a KAMIYO database or is newer than this version.
"""

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from kamiyo.access.instances import MIN_STALE_S, STALE_AFTER_FLUSHES
from kamiyo.cli_support import err, fail, settings_or_exit
from kamiyo.db.migrate import HEAD_REVISION, newer_than_head

POSTGRES_ADVICE = (
    "this database is PostgreSQL: back it up with `pg_dump --format=custom --file=kamiyo.dump "
    "DATABASE_URL` and restore with `pg_restore --clean --if-exists --dbname=DATABASE_URL "
    "kamiyo.dump` (docs/deploy.md, Backups)"
)


def _sqlite_file() -> Path:
    """The configured database's file, or exit explaining why there is none to copy."""
    url = make_url(settings_or_exit().database.resolved_url)
    if url.get_backend_name() != "sqlite":
        fail(POSTGRES_ADVICE, code=2)
    if not url.database or url.database == ":memory:":
        fail("the configured SQLite database is in memory: there is no file to copy", code=2)
    return Path(url.database)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _revision(connection: sqlite3.Connection) -> str | None:
    """The Alembic revision recorded in the file, None when it is not a KAMIYO database."""
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if not {"alembic_version", "incidents"} <= tables:
            return None
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:  # not an SQLite file at all
        return None
    return str(row[0]) if row else None


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """``source`` into a new file at ``target``, written beside it and renamed into place, so
    an interrupted copy never leaves a half database under the name."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)  # pages=-1: one step, one consistent read transaction
            ok = copy.execute("PRAGMA quick_check").fetchone()
        finally:
            copy.close()
    except sqlite3.Error as exc:  # the disk full, the folder read-only, the source unreadable
        partial.unlink(missing_ok=True)
        fail(f"could not copy to {target}: {exc}; nothing written")
    if not ok or ok[0] != "ok":
        partial.unlink(missing_ok=True)
        fail(f"the copy failed SQLite's check ({ok[0] if ok else 'no answer'}); nothing written")
    partial.replace(target)


def backup(
    path: Annotated[Path, typer.Argument(help="The file to write the copy to.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
) -> None:
    """Copy the SQLite database to PATH, consistently, while the server keeps serving."""
    source = _sqlite_file()
    if not source.is_file():
        fail(f"there is no database at {source} yet (run `kamiyo db upgrade`)")
    if path.exists() and not force:
        fail(f"{path} exists: choose another name, or give --force to overwrite it", code=2)
    if path.is_dir():
        fail(f"{path} is a folder: name the file to write", code=2)
    if not path.parent.is_dir():
        fail(f"{path.parent} is not a folder: create it first", code=2)
    started = time.perf_counter()
    connection = _read_only(source)
    try:
        revision = _revision(connection)
        _copy(connection, path)
    finally:
        connection.close()
    err.print(
        f"Backed up {source} to {path}: {path.stat().st_size / 1e6:.1f} MB, schema "
        f"{revision or 'unknown'}, in {time.perf_counter() - started:.2f} s."
    )


def _serving(connection: sqlite3.Connection) -> list[str]:
    """Instances the database records as still writing usage (see access/instances.py)."""
    try:
        rows = connection.execute(
            "SELECT id, host, pid, last_flush_at, flush_s FROM serving_instances "
            "WHERE stopped_at IS NULL"
        ).fetchall()
    except sqlite3.OperationalError:  # an older schema without the table
        return []
    now = dt.datetime.now(dt.UTC)
    found = []
    for instance_id, host, pid, last_flush_at, flush_s in rows:
        written = dt.datetime.fromisoformat(str(last_flush_at)).replace(tzinfo=dt.UTC)
        if (now - written).total_seconds() <= max(STALE_AFTER_FLUSHES * flush_s, MIN_STALE_S):
            found.append(f"{instance_id} ({host}, pid {pid})")
    return found


def restore(
    path: Annotated[Path, typer.Argument(help="A copy made by `kamiyo backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the configured database if it exists.")
    ] = False,
) -> None:
    """Replace the SQLite database with the copy at PATH. Stop every server first."""
    target = _sqlite_file()
    if not path.is_file():
        fail(f"{path} is not a file", code=2)
    copy = _read_only(path)
    try:
        revision = _revision(copy)
        if revision is None:
            fail(f"{path} is not a KAMIYO database (no schema revision in it)", code=2)
        if newer_than_head(revision):
            fail(
                f"{path} has schema {revision}, newer than this version's {HEAD_REVISION}: "
                "restore it with the KAMIYO version that made it",
                code=2,
            )
        if target.exists():
            if not force:
                fail(f"{target} exists: give --force to replace it with {path}", code=2)
            current = _read_only(target)
            try:
                serving = _serving(current)
            finally:
                current.close()
            if serving:
                fail(
                    "the database records instances still serving: "
                    + ", ".join(serving)
                    + "; stop them first (restoring under a running server loses its writes)"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        # The replaced database's write-ahead log belongs to the old file: it must not replay
        # into the restored one.
        for suffix in ("-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        started = time.perf_counter()
        _copy(copy, target)
    finally:
        copy.close()
    upgrade = "" if revision == HEAD_REVISION else "; run `kamiyo db upgrade` before serving"
    err.print(
        f"Restored {target} from {path} (schema {revision}) in "
        f"{time.perf_counter() - started:.2f} s{upgrade}."
    )


def register(app: typer.Typer) -> None:
    app.command()(backup)
    app.command()(restore)

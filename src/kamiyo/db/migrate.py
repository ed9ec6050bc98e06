"""Schema migrations (Alembic), runnable from code and from ``kamiyo db upgrade``.

Alembic is imported only when a migration has to run: checking that the schema is current is a
plain query, which keeps every start of the CLI and the stdio server quick.
"""

from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision in migrations/versions (a test checks that the two agree).
HEAD_REVISION = "0021"


def newer_than_head(revision: str) -> bool:
    """Whether ``revision`` is one this version does not know: a newer version migrated the
    database (our revisions are numbered in order)."""
    return not revision.isdigit() or int(revision) > int(HEAD_REVISION)


def alembic_config() -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "kamiyo.db:migrations")
    return config


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def _run(engine: AsyncEngine, direction: str, revision: str) -> None:
    from alembic import command

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, "downgrade", revision)

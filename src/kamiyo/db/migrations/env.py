"""Alembic environment: migrations run on a connection handed over by ``kamiyo.db.migrate``."""

from alembic import context
from sqlalchemy.engine import Connection

from kamiyo.db.tables import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `kamiyo db upgrade`, which supplies the connection")

context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()

"""Chains and reporting firms copied onto each incident, so a search reads one table.

The join tables stay the source of truth for filtering; these lists are what result summaries
show, written by the same ingest path. Existing rows get them when their dataset next loads:
the migration forgets which datasets are loaded, so the next start reloads them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("chain_list", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("source_list", sa.JSON, nullable=False, server_default="[]"))
    op.execute("DELETE FROM datasets")


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("source_list")
        batch.drop_column("chain_list")

"""Usage records in hash chains, and the chains' heads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_pk", sa.Integer, nullable=True),
        sa.Column("key_pk", sa.Integer, nullable=True),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("duration_us", sa.Integer, nullable=False),
        sa.Column("result_count", sa.Integer, nullable=True),
        sa.Column("cost_units", sa.Integer, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("chain", "seq"),
    )
    op.create_index("ix_usage_records_account_at", "usage_records", ["account_pk", "at"])
    op.create_table(
        "usage_chains",
        sa.Column("chain", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_chains")
    op.drop_index("ix_usage_records_account_at", "usage_records")
    op.drop_table("usage_records")

"""Usage retention: daily totals of pruned usage records, and signed chain checkpoints.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("account_pk", sa.Integer, nullable=True),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("cost_units", sa.Integer, nullable=False),
        sa.Column("duration_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("chain", "day", "tool", "tier", "status"),
    )
    op.create_index("ix_usage_daily_account_day", "usage_daily", ["account_pk", "day"])
    op.create_table(
        "usage_checkpoints",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("pruned", sa.Integer, nullable=False),
        sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(64), nullable=False),
        sa.UniqueConstraint("chain", "seq"),
    )


def downgrade() -> None:
    op.drop_table("usage_checkpoints")
    op.drop_index("ix_usage_daily_account_day", table_name="usage_daily")
    op.drop_table("usage_daily")

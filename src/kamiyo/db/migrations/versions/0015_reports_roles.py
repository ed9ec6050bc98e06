"""Shared reports (a share link's token only as its SHA-256) and the accounts' role.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("accounts") as accounts:
        accounts.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="user"))
    op.create_table(
        "shared_reports",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "account_pk",
            sa.Integer,
            sa.ForeignKey("accounts.pk", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("arguments", sa.JSON, nullable=False),
        sa.Column("answer", sa.JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("share_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("shared_at", _TIME, nullable=True),
        sa.Column("share_revoked_at", _TIME, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("shared_reports")
    with op.batch_alter_table("accounts") as accounts:
        accounts.drop_column("role")

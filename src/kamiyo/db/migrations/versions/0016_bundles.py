"""Bundles of prepaid calls, bought by one x402 payment (the redeeming token only as SHA-256).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bundles",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "payment_pk",
            sa.Integer,
            sa.ForeignKey("payments.pk", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("payer", sa.String(128), nullable=True),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bundles")

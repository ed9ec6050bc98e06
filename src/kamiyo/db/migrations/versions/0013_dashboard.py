"""Dashboard: one-time log-in links and browser sessions (only their tokens' SHA-256).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def _account() -> sa.Column[int]:
    return sa.Column(
        "account_pk",
        sa.Integer,
        sa.ForeignKey("accounts.pk", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def upgrade() -> None:
    op.create_table(
        "login_links",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        _account(),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("used_at", _TIME, nullable=True),
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        _account(),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("last_seen", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dashboard_sessions")
    op.drop_table("login_links")

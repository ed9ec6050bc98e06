"""Stripe state on subscriptions, handled Stripe events, one-time key links.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("stripe_price_id", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("cancel_at_period_end", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("stripe_state_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("past_due_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(200), nullable=False),
    )
    op.create_table(
        "key_reveals",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "account_pk",
            sa.Integer,
            sa.ForeignKey("accounts.pk", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("key_reveals")
    op.drop_table("stripe_events")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("past_due_since")
        batch.drop_column("stripe_state_at")
        batch.drop_column("cancel_at_period_end")
        batch.drop_column("stripe_price_id")

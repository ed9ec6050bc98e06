"""Operators' account controls: how a tier was set, and a credentials version per account.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("credentials_version", sa.Integer, nullable=False, server_default="0")
        )
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(
            sa.Column("tier_source", sa.String(16), nullable=False, server_default="stripe")
        )
    # Rows Stripe never touched were made by `kamiyo accounts create --tier`: set by hand.
    op.execute(
        "UPDATE subscriptions SET tier_source = 'operator' "
        "WHERE stripe_customer_id IS NULL AND stripe_subscription_id IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("tier_source")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("credentials_version")

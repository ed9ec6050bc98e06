"""Receipts in the usage records: a paid call's record names its settled payment's journal row.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03

The payer, network, amount and transaction stay in ``payments`` (the one place they are kept);
a usage record points at that row, and its hash covers the facts read through it. Records
written before this revision have no payment and keep their hashes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as records:
        records.add_column(sa.Column("payment_pk", sa.Integer, nullable=True))
        records.create_index("ix_usage_records_payment_pk", ["payment_pk"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as records:
        records.drop_index("ix_usage_records_payment_pk")
        records.drop_column("payment_pk")

"""Settlements whose outcome is unknown: the chain identity that resolves them later.

A settlement that timed out or lost its connection after the transaction went out stays in the
journal as ``pending`` with what the chain knows it by (EVM: payer, nonce, token, validBefore and
the transaction hash; Solana: the signature and the transaction's blockhash), so a retry of the
same payment, ``kamiyo payments reconcile`` or the worker can ask the chain how it ended.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("chain_identity", sa.JSON, nullable=True))
    # Reconciling reads the few pending rows among many settled ones.
    op.create_index("ix_payments_state", "payments", ["state"])


def downgrade() -> None:
    op.drop_index("ix_payments_state", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("chain_identity")

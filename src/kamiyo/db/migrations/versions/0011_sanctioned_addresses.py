"""Sanctioned addresses: the OFAC SDN digital-currency addresses, per list, with its date.

Loaded from the package on the next start (like the incident bundle) and refreshed by
``kamiyo ingest --source ofac``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sanctioned_addresses",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("assets", sa.JSON, nullable=False),
        sa.Column("list_name", sa.String(32), nullable=False),
        sa.Column("list_date", sa.Date, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("list_name", "address"),
    )
    op.create_index("ix_sanctioned_addresses_address", "sanctioned_addresses", ["address"])


def downgrade() -> None:
    op.drop_index("ix_sanctioned_addresses_address", "sanctioned_addresses")
    op.drop_table("sanctioned_addresses")

"""Incidents with chains, addresses, transactions, references, provenance and full-text search.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _incident_fk() -> sa.Column[int]:
    return sa.Column(
        "incident_pk",
        sa.Integer,
        sa.ForeignKey("incidents.pk", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False, unique=True),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("date_precision", sa.String(8), nullable=False),
        sa.Column("protocol", sa.String(200), nullable=False),
        sa.Column("loss_usd", sa.Float),
        sa.Column("loss_usd_basis", sa.String(16)),
        sa.Column("loss_text", sa.Text),
        sa.Column("attack_type", sa.String(32), nullable=False),
        sa.Column("attack_type_raw", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("funds_returned", sa.Boolean),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_incidents_date", "incidents", ["date", "pk"])
    op.create_index("ix_incidents_attack_type", "incidents", ["attack_type", "date"])
    op.create_index("ix_incidents_protocol", "incidents", ["protocol"])

    op.create_table(
        "incident_chains",
        sa.Column(
            "incident_pk",
            sa.Integer,
            sa.ForeignKey("incidents.pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("chain", sa.String(32), primary_key=True),
    )
    op.create_index("ix_incident_chains_chain", "incident_chains", ["chain", "incident_pk"])

    op.create_table(
        "incident_addresses",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        _incident_fk(),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("chain", sa.String(32)),
        sa.Column("address", sa.String(128), nullable=False, index=True),
        sa.Column("label", sa.String(200)),
    )
    op.create_table(
        "incident_transactions",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        _incident_fk(),
        sa.Column("chain", sa.String(32)),
        sa.Column("hash", sa.String(128), nullable=False, index=True),
    )
    op.create_table(
        "incident_references",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        _incident_fk(),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("firm", sa.String(64), index=True),
    )
    op.create_table(
        "incident_provenance",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        _incident_fk(),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("source_ref", sa.Text),
        sa.Column("source_url", sa.Text),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("incident_pk", "source"),
    )
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("incidents", sa.Integer, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    )

    if op.get_context().dialect.name == "postgresql":
        # Loss ordering wants NULLs (no USD figure) last, which PostgreSQL puts first by default.
        op.execute("CREATE INDEX ix_incidents_loss ON incidents (loss_usd DESC NULLS LAST)")
        op.execute("ALTER TABLE incidents ADD COLUMN search_vector tsvector")
        op.execute("CREATE INDEX ix_incidents_search ON incidents USING gin (search_vector)")
    else:
        op.create_index("ix_incidents_loss", "incidents", ["loss_usd"])
        # Terms are normalised in Python (intel/text.py); FTS5 only splits on spaces.
        op.execute(
            "CREATE VIRTUAL TABLE incident_search USING fts5("
            "protocol, attack, body, tokenize = 'unicode61 remove_diacritics 0')"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        op.execute("DROP TABLE incident_search")
    for table in (
        "datasets",
        "incident_provenance",
        "incident_references",
        "incident_transactions",
        "incident_addresses",
        "incident_chains",
        "incidents",
    ):
        op.drop_table(table)

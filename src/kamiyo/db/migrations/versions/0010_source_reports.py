"""Source reports and entity resolution: every source's report kept, incidents derived from them.

An incident is now the merge of its reports (``source_reports``); ``incident_provenance`` goes,
since the reports say where each fact came from. Incidents get the fields several sources
bring (disclosure date, funds returned in USD, the kind of victim), every name they go by
(``incident_names``), and their summaries a list of report entries (``source_list``; the
firms the references cite move to ``firm_list``). Protocol metadata from registries goes in
``protocols``, each source's last run in ``source_state``, operators' corrections of merge
decisions in ``report_links``.

Every incident so far came from the bundled snapshot, so the migration empties the incident
tables and forgets which datasets are loaded: the next start rebuilds them from the bundle,
with the same incident ids.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_table("incident_provenance")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DELETE FROM incident_search")
    op.execute("DELETE FROM incidents")
    op.execute("DELETE FROM datasets")
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("funds_returned_usd", sa.Float, nullable=True))
        batch.add_column(sa.Column("disclosed", sa.Date, nullable=True))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("firm_list", sa.JSON, nullable=False, server_default="[]"))
    op.create_table(
        "incident_names",
        sa.Column(
            "incident_pk",
            sa.Integer,
            sa.ForeignKey("incidents.pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_index("ix_incident_names_key", "incident_names", ["key", "incident_pk"])
    op.create_table(
        "source_reports",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("incident_pk", sa.Integer, sa.ForeignKey("incidents.pk"), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("first_seen", _UTC, nullable=False),
        sa.Column("last_seen", _UTC, nullable=False),
        sa.Column("match_rule", sa.String(32), nullable=False),
        sa.Column("match_score", sa.Float, nullable=True),
        sa.Column("match_evidence", sa.JSON, nullable=False),
        sa.Column("decided_by", sa.String(16), nullable=False),
        sa.Column("decided_at", _UTC, nullable=False),
        sa.UniqueConstraint("source", "source_id"),
    )
    op.create_index("ix_source_reports_incident_pk", "source_reports", ["incident_pk"])
    op.create_table(
        "report_links",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("left_source", sa.String(32), nullable=False),
        sa.Column("left_id", sa.String(200), nullable=False),
        sa.Column("right_source", sa.String(32), nullable=False),
        sa.Column("right_id", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.UniqueConstraint("kind", "left_source", "left_id", "right_source", "right_id"),
    )
    op.create_index("ix_report_links_right", "report_links", ["right_source", "right_id"])
    op.create_table(
        "source_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("last_run_at", _UTC, nullable=True),
        sa.Column("last_success_at", _UTC, nullable=True),
        sa.Column("last_error_at", _UTC, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("items_seen", sa.Integer, nullable=True),
        sa.Column("validators", sa.JSON, nullable=False),
        sa.Column("last_summary", sa.JSON, nullable=False),
    )
    op.create_table(
        "protocols",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("slug", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("defillama_id", sa.String(64), nullable=True),
        sa.Column("parent", sa.String(200), nullable=True),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.UniqueConstraint("source", "slug"),
    )
    op.create_index("ix_protocols_key", "protocols", ["key"])
    op.create_index("ix_protocols_defillama_id", "protocols", ["defillama_id"])


def downgrade() -> None:
    for table in ("protocols", "source_state", "report_links", "source_reports"):
        op.drop_table(table)
    op.drop_table("incident_names")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DELETE FROM incident_search")
    op.execute("DELETE FROM incidents")
    op.execute("DELETE FROM datasets")
    with op.batch_alter_table("incidents") as batch:
        for column in ("firm_list", "kind", "disclosed", "funds_returned_usd"):
            batch.drop_column(column)
    op.create_table(
        "incident_provenance",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "incident_pk",
            sa.Integer,
            sa.ForeignKey("incidents.pk", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("source_ref", sa.Text, nullable=True),
        sa.Column("source_url", sa.Text, nullable=True),
        sa.Column("ingested_at", _UTC, nullable=False),
        sa.UniqueConstraint("incident_pk", "source"),
    )

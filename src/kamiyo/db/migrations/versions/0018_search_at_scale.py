"""Stats and searches at a million incidents: pre-aggregated daily totals, chain indexes.

``incident_day_stats`` and ``incident_month_stats`` hold the totals of each day (month) and
attack type, overall (chain "") and per chain; ingest keeps them current
(``intel/stats_summary.py``) and this migration fills them from the incidents already stored.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    # incident_chains carries its incident's date and loss, indexed per chain.
    op.add_column("incident_chains", sa.Column("date", sa.Date, nullable=True))
    op.add_column("incident_chains", sa.Column("loss_usd", sa.Float, nullable=True))
    if postgres:
        op.execute(
            "UPDATE incident_chains c SET date = i.date, loss_usd = i.loss_usd "
            "FROM incidents i WHERE i.pk = c.incident_pk"
        )
    else:
        op.execute(
            "UPDATE incident_chains SET "
            "date = (SELECT date FROM incidents WHERE pk = incident_pk), "
            "loss_usd = (SELECT loss_usd FROM incidents WHERE pk = incident_pk)"
        )
    with op.batch_alter_table("incident_chains") as batch:
        batch.alter_column("date", nullable=False, existing_type=sa.Date)
    op.create_index(
        "ix_incident_chains_recent",
        "incident_chains",
        ["chain", "date", "incident_pk", "loss_usd"],
    )
    if postgres:  # loss order wants NULLs (no USD figure) last, PostgreSQL's default is first
        op.execute(
            "CREATE INDEX ix_incident_chains_loss ON incident_chains "
            "(chain, loss_usd DESC NULLS LAST, date DESC, incident_pk DESC)"
        )
    else:
        op.create_index(
            "ix_incident_chains_loss",
            "incident_chains",
            ["chain", "loss_usd", "date", "incident_pk"],
        )

    for name, period in (("incident_day_stats", "day"), ("incident_month_stats", "month")):
        op.create_table(
            name,
            sa.Column("chain", sa.String(32), primary_key=True),
            sa.Column(period, sa.Date, primary_key=True),
            sa.Column("attack_type", sa.String(32), primary_key=True),
            sa.Column("incidents", sa.Integer, nullable=False),
            sa.Column("loss_usd", sa.Float, nullable=False),
            sa.Column("with_loss", sa.Integer, nullable=False),
            sqlite_with_rowid=False,
        )
    op.create_index("ix_incident_day_stats_day", "incident_day_stats", ["day"])
    # Nominal losses are not counted (as intel/stats.COUNTED_LOSS).
    op.execute("""
        INSERT INTO incident_day_stats (chain, day, attack_type, incidents, loss_usd, with_loss)
        SELECT '', i.date, i.attack_type, count(*),
            coalesce(sum(CASE WHEN i.loss_usd_basis = 'nominal' THEN NULL ELSE i.loss_usd END), 0),
            count(CASE WHEN i.loss_usd_basis = 'nominal' THEN NULL ELSE i.loss_usd END)
        FROM incidents i GROUP BY i.date, i.attack_type
    """)
    op.execute("""
        INSERT INTO incident_day_stats (chain, day, attack_type, incidents, loss_usd, with_loss)
        SELECT c.chain, i.date, i.attack_type, count(*),
            coalesce(sum(CASE WHEN i.loss_usd_basis = 'nominal' THEN NULL ELSE i.loss_usd END), 0),
            count(CASE WHEN i.loss_usd_basis = 'nominal' THEN NULL ELSE i.loss_usd END)
        FROM incidents i JOIN incident_chains c ON c.incident_pk = i.pk
        GROUP BY c.chain, i.date, i.attack_type
    """)
    # Python adds the days of a month (the same for both backends' date storage).
    connection = op.get_bind()
    months: dict[tuple[str, dt.date, str], list[float]] = {}
    for chain, day, attack_type, incidents, loss, with_loss in connection.execute(
        sa.text(
            "SELECT chain, day, attack_type, incidents, loss_usd, with_loss "
            "FROM incident_day_stats ORDER BY chain, day, attack_type"
        )
    ):
        day = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
        totals = months.setdefault((chain, day.replace(day=1), attack_type), [0, 0.0, 0])
        totals[0] += incidents
        totals[1] += loss
        totals[2] += with_loss
    if months:
        connection.execute(
            sa.text(
                "INSERT INTO incident_month_stats "
                "(chain, month, attack_type, incidents, loss_usd, with_loss) "
                "VALUES (:c, :m, :a, :n, :l, :w)"
            ),
            [
                {"c": c, "m": m, "a": a, "n": n, "l": loss, "w": w}
                for (c, m, a), (n, loss, w) in months.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("incident_month_stats")
    op.drop_table("incident_day_stats")
    op.drop_index("ix_incident_chains_loss", "incident_chains")
    op.drop_index("ix_incident_chains_recent", "incident_chains")
    with op.batch_alter_table("incident_chains") as batch:
        batch.drop_column("loss_usd")
        batch.drop_column("date")

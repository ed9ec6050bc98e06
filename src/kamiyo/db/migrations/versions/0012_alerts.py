"""Alerts: rules, the outbox (written with the change it announces) and webhook deliveries.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column(
            "account_pk",
            sa.Integer,
            sa.ForeignKey("accounts.pk", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("payer", sa.String(128), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("filters", sa.JSON, nullable=False),
        sa.Column("webhook_url", sa.String(2048), nullable=True),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.String(300), nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
    )
    op.create_index("ix_alert_rules_account_pk", "alert_rules", ["account_pk"])
    op.create_index("ix_alert_rules_payer", "alert_rules", ["payer"])
    op.create_table(
        "outbox",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("done_at", _TIME, nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
    )
    op.create_index("ix_outbox_pending", "outbox", ["done_at", "pk"])
    op.create_table(
        "alert_deliveries",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(48), nullable=False, unique=True),
        sa.Column(
            "rule_pk",
            sa.Integer,
            sa.ForeignKey("alert_rules.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("outbox_pk", sa.Integer, nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.String(200), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("response_code", sa.Integer, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.UniqueConstraint("rule_pk", "outbox_pk"),
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_alert_deliveries_rule", "alert_deliveries", ["rule_pk", "pk"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("outbox")
    op.drop_table("alert_rules")

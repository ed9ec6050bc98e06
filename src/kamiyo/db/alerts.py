"""The alerts' tables: rules, the outbox, and each rule's webhook deliveries (a module of its
own beside ``tables.py``, on the same metadata).

The outbox is written in the same transaction as the change it announces (an ingest that adds
or changes incidents, an account that should be welcomed), so a crash between the commit and the
send loses nothing: a worker claims rows by a lease, and a row whose worker died is claimed
again when its lease runs out. A delivery is one rule's copy of one change, unique per
(rule, outbox row), so a change is delivered once per rule however many workers run.
"""

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime

# The outbox's kinds of row.
INCIDENT_KIND = "incident"  # {"incident_pk", "change": created|updated}
MAIL_KIND = "mail"  # {"template", "account_pk", …}


class AlertRule(Base):
    __tablename__ = "alert_rules"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)  # public: alr_…
    # The owner: an account, or (a monitor bought per call) the x402 payer's address.
    account_pk: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.pk", ondelete="CASCADE"), index=True
    )
    payer: Mapped[str | None] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # alerts.rules.AlertFilters as JSON (protocol names already resolved to name keys).
    filters: Mapped[dict[str, Any]] = mapped_column(JSON)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    # The Standard Webhooks signing secret, encrypted with a key derived from KAMIYO_SECRET_KEY
    # (it must be read back to sign; it is shown to the owner once, at creation).
    secret: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    # Deliveries that failed in a row (every attempt spent); reset by a success.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutboxEntry(Base):
    __tablename__ = "outbox"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # INCIDENT_KIND or MAIL_KIND
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Claimed by a worker until then; claimable again after (its worker died).
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_outbox_pending", "done_at", "pk"),)


class AlertDelivery(Base):
    __tablename__ = "alert_deliveries"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The Standard Webhooks webhook-id (msg_…): the same on every retry, so receivers dedupe.
    id: Mapped[str] = mapped_column(String(48), unique=True)
    rule_pk: Mapped[int] = mapped_column(ForeignKey("alert_rules.pk", ondelete="CASCADE"))
    # The change it carries (None for test_alert's deliveries).
    outbox_pk: Mapped[int | None] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))  # incident.created, incident.updated, …
    incident_id: Mapped[str | None] = mapped_column(String(200))
    # The exact body sent on every attempt (what was signed).
    body: Mapped[str] = mapped_column(Text)
    # pending, delivered, failed (every attempt spent), cancelled (rule deleted or disabled)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    response_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("rule_pk", "outbox_pk"),
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
        Index("ix_alert_deliveries_rule", "rule_pk", "pk"),
    )

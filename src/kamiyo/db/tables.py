"""The relational schema. Migrations in ``db/migrations`` create exactly this.

Full-text search lives beside these tables and differs per backend (see ``intel/fulltext.py``):
SQLite keeps an FTS5 table ``incident_search`` keyed by ``incidents.pk``; PostgreSQL keeps a
``search_vector`` tsvector column on ``incidents`` with a GIN index.
"""

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on every backend (SQLite stores datetimes without an offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(128), unique=True)
    date: Mapped[dt.date] = mapped_column(Date)
    # "day", or "month" when the source only knows the month (date is then the 1st).
    date_precision: Mapped[str] = mapped_column(String(8), default="day")
    protocol: Mapped[str] = mapped_column(String(200))
    loss_usd: Mapped[float | None] = mapped_column(Float)
    # How loss_usd was read from loss_text: usd, stablecoin (1:1), assumed_usd (no unit given).
    loss_usd_basis: Mapped[str | None] = mapped_column(String(16))
    loss_text: Mapped[str | None] = mapped_column(Text)
    attack_type: Mapped[str] = mapped_column(String(32))
    attack_type_raw: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # reported (one source says so) or confirmed (reproduced, e.g. by a proof of concept).
    status: Mapped[str] = mapped_column(String(16), default="reported")
    funds_returned: Mapped[bool | None] = mapped_column()
    funds_returned_usd: Mapped[float | None] = mapped_column(Float)
    disclosed: Mapped[dt.date | None] = mapped_column(Date)
    kind: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Copies for summaries, so a search reads one table: incident_chains, the references'
    # firms, and one short entry per source report (see intel.models.ReportEntry).
    chain_list: Mapped[list[str]] = mapped_column(JSON, default=list)
    firm_list: Mapped[list[str]] = mapped_column(JSON, default=list)
    source_list: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    chains: Mapped[list["IncidentChain"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )
    addresses: Mapped[list["IncidentAddress"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )
    transactions: Mapped[list["IncidentTransaction"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )
    references: Mapped[list["IncidentReference"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )

    __table_args__ = (
        Index("ix_incidents_date", "date", "pk"),
        # ix_incidents_loss is created by the migration: it is DESC NULLS LAST on PostgreSQL.
        Index("ix_incidents_attack_type", "attack_type", "date"),
        Index("ix_incidents_protocol", "protocol"),
    )


def _incident_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("incidents.pk", ondelete="CASCADE"), index=True)


class IncidentChain(Base):
    __tablename__ = "incident_chains"

    incident_pk: Mapped[int] = mapped_column(
        ForeignKey("incidents.pk", ondelete="CASCADE"), primary_key=True
    )
    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Copies of the incident's, so a search filtered by chain reads one chain's incidents in
    # date or loss order from an index instead of testing every incident for the chain.
    date: Mapped[dt.date] = mapped_column(Date)
    loss_usd: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_incident_chains_chain", "chain", "incident_pk"),
        Index("ix_incident_chains_recent", "chain", "date", "incident_pk", "loss_usd"),
        # ix_incident_chains_loss is created by the migration: DESC NULLS LAST on PostgreSQL.
    )


class IncidentAddress(Base):
    __tablename__ = "incident_addresses"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_pk: Mapped[int] = _incident_fk()
    role: Mapped[str] = mapped_column(String(32))
    chain: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(128), index=True)
    label: Mapped[str | None] = mapped_column(String(200))


class IncidentTransaction(Base):
    __tablename__ = "incident_transactions"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_pk: Mapped[int] = _incident_fk()
    chain: Mapped[str | None] = mapped_column(String(32))
    hash: Mapped[str] = mapped_column(String(128), index=True)


class IncidentReference(Base):
    __tablename__ = "incident_references"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_pk: Mapped[int] = _incident_fk()
    url: Mapped[str] = mapped_column(Text)
    # The security firm or alert service behind the link (BlockSec, PeckShield, ...), if known.
    firm: Mapped[str | None] = mapped_column(String(64), index=True)


class IncidentName(Base):
    """Every name an incident goes by (each report's protocol and aliases), by its name key.

    The key is ``intel.names.name_key`` of the name: what search, de-duplication and the name
    resolver compare.
    """

    __tablename__ = "incident_names"

    incident_pk: Mapped[int] = mapped_column(
        ForeignKey("incidents.pk", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_incident_names_key", "key", "incident_pk"),)


class SourceReportRow(Base):
    """One source's report of one incident, as reported, and why it joined its incident."""

    __tablename__ = "source_reports"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(200))
    incident_pk: Mapped[int] = mapped_column(ForeignKey("incidents.pk"), index=True)
    # bundle (the packaged snapshot), live (fetched from the source) or import (--from): a
    # bundled load never overwrites a report a live run or an import wrote.
    origin: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)  # the SourceReport, as JSON
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The merge decision: the rule that attached this report (new: it started the incident),
    # its score and the evidence (the matched report under "matched"); by auto or operator.
    match_rule: Mapped[str] = mapped_column(String(32))
    match_score: Mapped[float | None] = mapped_column(Float)
    match_evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decided_by: Mapped[str] = mapped_column(String(16), default="auto")
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("source", "source_id"),)


class ReportLink(Base):
    """An operator's correction: two reports kept apart, or kept together, whatever the rules.

    Keyed by (source, source id), not by row, so a correction outlives re-ingests.
    """

    __tablename__ = "report_links"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))  # apart | together
    left_source: Mapped[str] = mapped_column(String(32))
    left_id: Mapped[str] = mapped_column(String(200))
    right_source: Mapped[str] = mapped_column(String(32))
    right_id: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("kind", "left_source", "left_id", "right_source", "right_id"),
        Index("ix_report_links_right", "right_source", "right_id"),
    )


class SourceState(Base):
    """Each source's last run: when it last worked, its last error, its conditional-request
    validators (ETag and Last-Modified per document) and how many items it last saw."""

    __tablename__ = "source_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    items_seen: Mapped[int | None] = mapped_column(Integer)
    validators: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProtocolRow(Base):
    """A protocol's registry metadata (DeFiLlama ``/protocols``), for names and risk."""

    __tablename__ = "protocols"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    slug: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200), index=True)  # name_key(name)
    defillama_id: Mapped[str | None] = mapped_column(String(64), index=True)
    parent: Mapped[str | None] = mapped_column(String(200))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)  # the ProtocolRecord, as JSON
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("source", "slug"),)


class Dataset(Base):
    """Which bundled or fetched dataset is loaded, so a new release reloads only what changed."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    incidents: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Role(StrEnum):
    """What an account may do beyond its own: admins open the operators' page."""

    USER = "user"
    ADMIN = "admin"


class Account(Base):
    __tablename__ = "accounts"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    # active, or disabled by an operator (any other value is refused as disabled too).
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Bumped in the same transaction as any change to what the account's credentials may do
    # (a key or token revoked, the account disabled, its tier changed): see access/revocation.py.
    credentials_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # user, or admin (the operators' page): ``kamiyo accounts set-role``.
    role: Mapped[str] = mapped_column(
        String(16), default=Role.USER.value, server_default=Role.USER.value
    )


class Subscription(Base):
    """An account's paid state; Stripe webhooks keep it current, the gate reads it."""

    __tablename__ = "subscriptions"

    account_pk: Mapped[int] = mapped_column(
        ForeignKey("accounts.pk", ondelete="CASCADE"), primary_key=True
    )
    tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # active, past_due, canceled
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    current_period_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    stripe_price_id: Mapped[str | None] = mapped_column(String(64))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the Stripe state held here was current (the event's ``created``): an event older
    # than this arrived out of order and must not overwrite it.
    stripe_state_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Since when payment has failed (status past_due); access lasts a grace period from here.
    past_due_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Who set the tier held here: "stripe" (webhooks, billing sync) or "operator" (by hand,
    # `kamiyo accounts set-tier` / `create --tier`). The next Stripe change takes over again.
    tier_source: Mapped[str] = mapped_column(String(16), default="stripe", server_default="stripe")


class ApiKey(Base):
    """An API key, kept only as its SHA-256; ``prefix`` is what people see to tell keys apart."""

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_pk: Mapped[int] = mapped_column(
        ForeignKey("accounts.pk", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RevokedToken(Base):
    """A JWT id refused before its expiry; rows can go once ``expires_at`` has passed."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class StripeEvent(Base):
    """A Stripe webhook event handled once: redeliveries and concurrent duplicates find it here."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # Stripe's time for the event
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(200))  # what handling it did, for operators


class KeyReveal(Base):
    """A one-time link that creates and shows an API key; only the link token's hash is kept."""

    __tablename__ = "key_reveals"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_pk: Mapped[int] = mapped_column(
        ForeignKey("accounts.pk", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

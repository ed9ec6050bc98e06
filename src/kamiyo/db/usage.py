"""The usage tables: one record per call as the meter saw it, each chain's head, and the serving
instances that write them (a module of its own beside ``tables.py``, on the same metadata)."""

import datetime as dt

from sqlalchemy import BigInteger, Date, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime


class UsageRecord(Base):
    """One call, admitted or refused, as the meter saw it.

    Records form a hash chain per ``chain`` (an account, or all anonymous callers): each hash
    covers the record and the previous hash, so an edited, removed or reordered record shows.
    No foreign keys: usage outlives the keys and accounts it names.
    """

    __tablename__ = "usage_records"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    account_pk: Mapped[int | None] = mapped_column(Integer)
    key_pk: Mapped[int | None] = mapped_column(Integer)
    tool: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    duration_us: Mapped[int] = mapped_column(Integer)
    result_count: Mapped[int | None] = mapped_column(Integer)
    cost_units: Mapped[int] = mapped_column(Integer)
    # A call paid per call (x402): its settled payment's row in ``payments``, which holds the
    # receipt (payer, network, amount, transaction) once; the hash covers those facts.
    payment_pk: Mapped[int | None] = mapped_column(Integer)
    # The request the call came in (X-Request-ID, a traceparent's trace id, or our own), to find
    # its log lines; outside the hash (see access/meter.py's record_hash).
    request_id: Mapped[str | None] = mapped_column(String(128))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_usage_records_account_at", "account_pk", "at"),
        Index("ix_usage_records_payment_pk", "payment_pk"),
    )


class UsageChain(Base):
    """The head of each usage chain: its last sequence number and hash."""

    __tablename__ = "usage_chains"

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ServingInstance(Base):
    """A serving process, as its meter registered it: when it last wrote usage, and whether it
    stopped cleanly. One that never stopped and writes no more died with the calls it answered
    since its last write unrecorded (``kamiyo usage verify`` reports it)."""

    __tablename__ = "serving_instances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # a random hex id
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    flush_s: Mapped[float] = mapped_column(Float)  # how often it writes (KAMIYO_METER_FLUSH_S)
    # When the events of its last successful write had been taken: every call answered before
    # it is recorded.
    last_flush_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class UsageDaily(Base):
    """Pruned usage records folded into totals per chain, UTC day, tool, tier and status.

    Written by the retention job (access/retention.py) in the transaction that deletes the
    records it counts, so a call is counted either here or in ``usage_records``, never both.
    """

    __tablename__ = "usage_daily"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(32))
    day: Mapped[dt.date] = mapped_column(Date)
    account_pk: Mapped[int | None] = mapped_column(Integer)
    tool: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    calls: Mapped[int] = mapped_column(Integer)
    cost_units: Mapped[int] = mapped_column(Integer)
    duration_us: Mapped[int] = mapped_column(BigInteger)  # the sum, for mean durations

    __table_args__ = (
        UniqueConstraint("chain", "day", "tool", "tier", "status"),
        Index("ix_usage_daily_account_day", "account_pk", "day"),
    )


class UsageCheckpoint(Base):
    """Records 1..``seq`` of ``chain`` were pruned; the last one's hash was ``hash``.

    Signed (HMAC-SHA256, access/usage_checkpoint.py) so that a chain verifies from here: without
    the signature anyone able to delete records could also write a checkpoint over the gap.
    """

    __tablename__ = "usage_checkpoints"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    pruned: Mapped[int] = mapped_column(Integer)  # records this prune removed
    # The cut-off: every record pruned was before it (payments settled before it may have had
    # their records pruned, so "unrecorded settlements" counts only later ones).
    pruned_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(16))  # which key signed it
    signature: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("chain", "seq"),)

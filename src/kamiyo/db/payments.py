"""The settlement journal's table (payments/journal.py writes it; a module of its own beside
``tables.py``, on the same metadata)."""

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime


class Payment(Base):
    """The settlement journal: one row per x402 payment, so no payment is used or charged twice.

    ``payment_key`` names what the chain itself can spend once (an EIP-3009 authorization's
    payer and nonce; a Solana transaction), unique across instances. ``state`` goes held ->
    settled, or held -> failed (not charged; the same payment may be tried again), or held ->
    pending when the chain's answer to the settlement never came (payments/settlements.py):
    then pending -> landed (on chain, its answer not handed out yet) -> settled, or pending ->
    failed once the chain shows it can no longer land.
    """

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_state", "state"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_key: Mapped[str] = mapped_column(String(64), unique=True)
    payload_hash: Mapped[str] = mapped_column(String(64))
    # The client's idempotency key (the payment-identifier extension), if it sent one.
    payment_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    tool: Mapped[str] = mapped_column(String(64))
    network: Mapped[str] = mapped_column(String(64))
    payer: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    transaction: Mapped[str | None] = mapped_column(String(128))
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The answer the payment bought, kept so a retry with the same payment id gets it again.
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What the chain knows a pending settlement by (payments/settlements.py: ChainIdentity).
    chain_identity: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

"""Bundles of prepaid calls (a module of its own beside ``tables.py``, on the same metadata).

One x402 payment buys ``calls`` calls of one tool; ``used`` counts those taken. The token that
redeems them is kept only as its SHA-256: it is a random value nobody can guess, so a fast
hash keeps a database leak from handing out working bundles.
"""

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime


class Bundle(Base):
    __tablename__ = "bundles"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The settled payment that bought it: one bundle per payment, so a replay buys nothing.
    payment_pk: Mapped[int] = mapped_column(
        ForeignKey("payments.pk", ondelete="CASCADE"), unique=True
    )
    tool: Mapped[str] = mapped_column(String(64))
    calls: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer)
    payer: Mapped[str | None] = mapped_column(String(128))
    network: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

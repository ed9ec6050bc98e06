"""Shared reports (a module of its own beside ``tables.py``, on the same metadata).

A report keeps a risk assessment or a wallet screen as it was answered, for its owner to open
again and, if they choose, to share. The share link's token is kept only as its SHA-256: the
token lives in the link, so a database leak opens no report.
"""

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime


class SharedReport(Base):
    """One answer of ``operation`` (its structured content) for ``account_pk``; shared while
    ``share_hash`` is set, never after ``share_revoked_at``."""

    __tablename__ = "shared_reports"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_pk: Mapped[int] = mapped_column(
        ForeignKey("accounts.pk", ondelete="CASCADE"), index=True
    )
    operation: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    share_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    shared_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    share_revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

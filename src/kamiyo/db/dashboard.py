"""The dashboard's tables: one-time log-in links and browser sessions (a module of its own
beside ``tables.py``, on the same metadata).

Both keep only the SHA-256 of their token: the token itself lives in a mail or a cookie, so a
database leak opens no session and uses no link.
"""

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime


class LoginLink(Base):
    """A one-time link that logs its account into the dashboard."""

    __tablename__ = "login_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_pk: Mapped[int] = mapped_column(
        ForeignKey("accounts.pk", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class DashboardSession(Base):
    """A logged-in browser: valid until ``expires_at`` and while used within the idle limit."""

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_pk: Mapped[int] = mapped_column(
        ForeignKey("accounts.pk", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime)

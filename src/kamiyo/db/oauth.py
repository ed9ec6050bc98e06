"""The OAuth authorization server's tables (a module of its own beside ``tables.py``, on the
same metadata): registered clients, authorization codes, grants, and the tokens each grant has.

Every secret is kept only as its SHA-256 (client secrets, codes, refresh tokens: random values
nobody can guess, so a fast hash keeps a database leak from revealing working ones). A grant is
one account's consent to one client; revoking it retires its refresh tokens and refuses its
access tokens (by ``jti``, through ``revoked_tokens``).
"""

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime

CLIENT_ID_WIDTH = 2048  # a Client ID Metadata Document's URL is the client's id
URL_WIDTH = 2048


class OAuthClient(Base):
    """A client registered dynamically (RFC 7591); metadata-document clients are not stored."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64))  # None: a public client
    # The registered metadata as the client sent it (redirect URIs, name, grant types, …).
    client_metadata: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class OAuthCode(Base):
    """An authorization code: single use, short-lived, bound to everything it was asked with."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("accounts.pk", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_WIDTH))
    client_name: Mapped[str] = mapped_column(String(200))
    redirect_uri: Mapped[str] = mapped_column(String(URL_WIDTH))
    redirect_uri_explicit: Mapped[bool] = mapped_column()
    code_challenge: Mapped[str] = mapped_column(String(128))
    resource: Mapped[str] = mapped_column(String(URL_WIDTH))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The grant its exchange made: a second use of the code revokes it (RFC 6749 §4.1.2).
    grant_pk: Mapped[int | None] = mapped_column(ForeignKey("oauth_grants.pk", ondelete="SET NULL"))


class OAuthGrant(Base):
    """An account's consent to one client, for one resource."""

    __tablename__ = "oauth_grants"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("accounts.pk", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_WIDTH))
    client_name: Mapped[str] = mapped_column(String(200))
    resource: Mapped[str] = mapped_column(String(URL_WIDTH))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_oauth_grants_account", "account_pk", "client_id"),)


class OAuthAccessToken(Base):
    """Which grant an access token (a JWT, by its ``jti``) was issued under."""

    __tablename__ = "oauth_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_pk: Mapped[int] = mapped_column(
        ForeignKey("oauth_grants.pk", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class OAuthRefreshToken(Base):
    """A refresh token; each use retires it and issues the next (rotation)."""

    __tablename__ = "oauth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_pk: Mapped[int] = mapped_column(
        ForeignKey("oauth_grants.pk", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Set when it was used (or its grant revoked): presenting it again revokes the grant.
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

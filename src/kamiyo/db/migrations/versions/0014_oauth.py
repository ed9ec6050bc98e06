"""OAuth authorization server: clients, codes, grants, access and refresh tokens.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_URL = sa.String(2048)


def _account() -> sa.Column[int]:
    return sa.Column(
        "account_pk",
        sa.Integer,
        sa.ForeignKey("accounts.pk", ondelete="CASCADE"),
        nullable=False,
    )


def _grant(ondelete: str, nullable: bool) -> sa.Column[int]:
    return sa.Column(
        "grant_pk",
        sa.Integer,
        sa.ForeignKey("oauth_grants.pk", ondelete=ondelete),
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=True),
        sa.Column("client_metadata", sa.JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "oauth_grants",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        _account(),
        sa.Column("client_id", _URL, nullable=False),
        sa.Column("client_name", sa.String(200), nullable=False),
        sa.Column("resource", _URL, nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("last_used_at", _TIME, nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
    )
    op.create_index("ix_oauth_grants_account", "oauth_grants", ["account_pk", "client_id"])
    op.create_table(
        "oauth_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        _account(),
        sa.Column("client_id", _URL, nullable=False),
        sa.Column("client_name", sa.String(200), nullable=False),
        sa.Column("redirect_uri", _URL, nullable=False),
        sa.Column("redirect_uri_explicit", sa.Boolean, nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("resource", _URL, nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("used_at", _TIME, nullable=True),
        _grant("SET NULL", nullable=True),
    )
    op.create_table(
        "oauth_access_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        _grant("CASCADE", nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
    )
    op.create_index("ix_oauth_access_tokens_grant_pk", "oauth_access_tokens", ["grant_pk"])
    op.create_table(
        "oauth_refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        _grant("CASCADE", nullable=False),
        sa.Column("issued_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("retired_at", _TIME, nullable=True),
    )
    op.create_index("ix_oauth_refresh_tokens_grant_pk", "oauth_refresh_tokens", ["grant_pk"])


def downgrade() -> None:
    op.drop_table("oauth_refresh_tokens")
    op.drop_table("oauth_access_tokens")
    op.drop_table("oauth_codes")
    op.drop_index("ix_oauth_grants_account", table_name="oauth_grants")
    op.drop_table("oauth_grants")
    op.drop_table("oauth_clients")

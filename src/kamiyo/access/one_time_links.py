"""Links mailed to an account that work once: the key reveal of sign-up and the dashboard's
log-in. The link carries 32 random bytes; the table keeps only their SHA-256, when the link was
made, when it expires and when it was used. Only the newest link of an account works (making
one retires the live ones), and using one is a conditional UPDATE, so exactly one of any
concurrent uses goes through. The caller commits.
"""

import datetime as dt
import hashlib
import re
import secrets

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.dashboard import LoginLink
from kamiyo.db.tables import KeyReveal

# What secrets.token_urlsafe(32) makes: anything else is no token of ours, and is not looked up.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")

LinkTable = type[KeyReveal] | type[LoginLink]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _usable(table: LinkTable, token: str, now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        table.token_hash == hash_token(token),
        table.used_at.is_(None),
        table.expires_at > now,
    )


async def is_live(session: AsyncSession, table: LinkTable, token: str, now: dt.datetime) -> bool:
    """Whether ``token`` would work now. Reads only: a mail scanner's GET uses nothing up."""
    if not TOKEN_PATTERN.fullmatch(token):
        return False
    found = await session.scalar(select(table.token_hash).where(*_usable(table, token, now)))
    return found is not None


async def use(session: AsyncSession, table: LinkTable, token: str, now: dt.datetime) -> int | None:
    """Mark the link used: the account it belongs to, or None (unknown, used or expired)."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    claimed = await session.execute(
        update(table)
        .where(*_usable(table, token, now))
        .values(used_at=now)
        .returning(table.account_pk)
    )
    account_pk: int | None = claimed.scalar_one_or_none()
    return account_pk


async def issue(
    session: AsyncSession, table: LinkTable, account_pk: int, ttl: dt.timedelta, now: dt.datetime
) -> str:
    """A new link's token for ``account_pk``, valid for ``ttl``; the account's live ones retire."""
    await session.execute(
        update(table)
        .where(table.account_pk == account_pk, table.used_at.is_(None), table.expires_at > now)
        .values(expires_at=now)
    )
    token = new_token()
    session.add(
        table(
            token_hash=hash_token(token),
            account_pk=account_pk,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return token

"""API keys: random, prefixed, shown once, stored only as a SHA-256 hash.

A key is ``kmy_live_`` plus 43 URL-safe characters (32 random bytes). Such a key cannot be
guessed, so a fast hash is enough to keep a database leak from revealing working keys; the
visible prefix (the first characters) lets people tell their keys apart.
"""

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access import revocation
from kamiyo.access.accounts import DEFAULT_GRACE, AccountError, current_tier
from kamiyo.db.bounds import unstorable
from kamiyo.db.tables import Account, ApiKey
from kamiyo.tiers import TIERS

KEY_PREFIX = "kmy_live_"
VISIBLE_CHARS = 8  # of the random part, kept in ``prefix``
MAX_NAME_LENGTH = 100


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str  # the only time the whole key exists outside its owner's hands
    prefix: str
    name: str


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def looks_like_key(raw: str) -> bool:
    return raw.startswith(KEY_PREFIX) and len(raw) < 200


async def create_key(
    session: AsyncSession,
    account: Account,
    name: str,
    past_due_grace: dt.timedelta = DEFAULT_GRACE,
) -> NewKey:
    """A new key for ``account``, within the seats of the tier it holds now (a past-due
    subscription keeps its tier for ``past_due_grace``: the operator's setting). Caller
    commits."""
    label = name.strip()
    if not label or len(label) > MAX_NAME_LENGTH:
        raise AccountError(f"a key name needs 1 to {MAX_NAME_LENGTH} characters")
    if (problem := unstorable(label)) is not None:
        raise AccountError(f"a key name must not contain {problem}")
    seats = TIERS[await current_tier(session, account, past_due_grace)].seats
    active = await session.scalar(
        select(func.count(ApiKey.pk)).where(
            ApiKey.account_pk == account.pk, ApiKey.revoked_at.is_(None)
        )
    )
    if seats is not None and (active or 0) >= seats:
        raise AccountError(
            f"{account.email} already has {active} active key(s), all its tier allows; "
            "revoke one or upgrade"
        )
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    prefix = raw[: len(KEY_PREFIX) + VISIBLE_CHARS]
    session.add(
        ApiKey(
            account_pk=account.pk,
            name=label,
            prefix=prefix,
            key_hash=hash_key(raw),
            created_at=dt.datetime.now(dt.UTC),
        )
    )
    await session.flush()
    return NewKey(key=raw, prefix=prefix, name=label)


async def list_keys(session: AsyncSession, account: Account) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.account_pk == account.pk).order_by(ApiKey.created_at)
    )
    return list(rows)


async def revoke_key(session: AsyncSession, prefix: str) -> ApiKey | None:
    """Revoke the key with this prefix; None when there is none. Caller commits with
    ``revocation.commit``, so running servers refuse it on the next call."""
    if unstorable(prefix) is not None:  # no key has one; the database could not be asked
        return None
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is not None and key.revoked_at is None:
        key.revoked_at = dt.datetime.now(dt.UTC)
        await revocation.bump(session, key.account_pk)
    return key


async def account_for_key(session: AsyncSession, raw: str) -> tuple[Account, int] | None:
    """The account a live key belongs to, with the key's pk; None when the key is unknown or
    revoked. The account may be disabled: the caller says so (``accounts.is_active``)."""
    if not looks_like_key(raw):
        return None
    row = (
        await session.execute(
            select(Account, ApiKey.pk)
            .join(ApiKey, ApiKey.account_pk == Account.pk)
            .where(
                ApiKey.key_hash == hash_key(raw),
                ApiKey.revoked_at.is_(None),
            )
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None

"""Bundles: one x402 payment buys a pack of calls of one tool, redeemed by a bearer token.

A wallet that asks its person to approve each paid request makes a one-cent call cost one
approval; a pack of 25 costs one approval for 25 calls. The pack sizes and prices are part of
each operation's price (``Price.packs``), so the price list stays the one place they are told.

The token is derived from the payment that bought the pack (an HMAC under the server's secret
key), so the paid answer can be given again on a retry of the same payment without the token
ever being stored: the database keeps only its SHA-256. Redeeming is one conditional UPDATE,
so calls on any number of instances sharing the database take exactly ``calls`` calls and no
more; a call that fails gives its call back.
"""

import base64
import datetime as dt
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.db.bundles import Bundle

log = logging.getLogger(__name__)

# The field of a paid answer that tells its bundle (``BundleState``), beside the answer's own.
BUNDLE_FIELD = "bundle"
TOKEN_PREFIX = "kb_"  # noqa: S105 (a prefix, not a secret)
# What ``token_for`` makes: anything else is no token of ours, and is not looked up.
_TOKEN_SHAPE = re.compile(r"^kb_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class BundleAsk:
    """What a call says of bundles: pay from one (its token), or buy a pack of ``buy`` calls."""

    token: str | None = None
    buy: int | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """What is left of a bundle, as every answer it paid for tells."""

    bundle_pk: int
    tool: str
    calls: int
    used: int
    expires_at: dt.datetime
    payer: str | None

    @property
    def remaining(self) -> int:
        return self.calls - self.used


class BundleState(BaseModel):
    """A bundle as an answer it paid for tells it (``structuredContent["bundle"]``)."""

    token: str | None = Field(
        default=None,
        description="Only in the answer that bought the bundle: send it with the next calls "
        "of this tool to pay for them from the bundle. Keep it secret: it is the bundle.",
    )
    tool: str
    calls: int
    remaining: int = Field(description="Calls left after this one.")
    expires_at: dt.datetime

    @classmethod
    def of(cls, balance: Balance, token: str | None = None) -> "BundleState":
        return cls(
            token=token,
            tool=balance.tool,
            calls=balance.calls,
            remaining=balance.remaining,
            expires_at=balance.expires_at,
        )


@dataclass(frozen=True, slots=True)
class Unusable:
    """Why a token redeems nothing; the call then falls back to the per-call price."""

    reason: Literal["unknown", "expired", "exhausted", "other_tool"]
    tool: str | None = None  # the tool the bundle is for, when it is another one

    def explain(self) -> str:
        return {
            "unknown": "This bundle token is not one this server issued.",
            "expired": "This bundle has expired.",
            "exhausted": "This bundle has no calls left.",
            "other_tool": f"This bundle pays for {self.tool} calls only.",
        }[self.reason]


def token_for(secret: bytes, payment_pk: int) -> str:
    """The bundle token a payment (its journal row) buys: the same for every retry of it."""
    mac = hmac.new(secret, f"kamiyo-bundle:{payment_pk}".encode(), hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def looks_like_token(text: str) -> bool:
    return _TOKEN_SHAPE.fullmatch(text) is not None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _balance(row: Bundle) -> Balance:
    return Balance(row.pk, row.tool, row.calls, row.used, row.expires_at, row.payer)


async def issue(
    sessions: async_sessionmaker[AsyncSession],
    *,
    token: str,
    payment_pk: int,
    tool: str,
    calls: int,
    payer: str | None,
    network: str,
    lifetime: dt.timedelta,
) -> Balance:
    """Record the bundle a settled payment bought, with the call that bought it already used.

    Issuing twice for one payment (a retry of the paid call) changes nothing and answers the
    bundle as it stands.
    """
    now = _now()
    async with sessions() as session:
        row = Bundle(
            token_hash=hash_token(token),
            payment_pk=payment_pk,
            tool=tool,
            calls=calls,
            used=1,
            payer=payer,
            network=network,
            created_at=now,
            expires_at=now + lifetime,
        )
        session.add(row)
        try:
            await session.commit()
            log.info("bundle of %d %s calls bought by %s on %s", calls, tool, payer, network)
            return _balance(row)
        except IntegrityError:
            await session.rollback()
        known = await session.scalar(select(Bundle).where(Bundle.payment_pk == payment_pk))
        if known is None:  # another payment's token hashed the same: cannot happen in practice
            raise RuntimeError("bundle token collision") from None
        return _balance(known)


async def redeem(
    sessions: async_sessionmaker[AsyncSession], token: str, tool: str
) -> Balance | Unusable:
    """Take one call from the bundle ``token`` names, for a call of ``tool``."""
    if not looks_like_token(token):
        return Unusable("unknown")
    digest, now = hash_token(token), _now()
    async with sessions() as session:
        taken = await session.execute(
            update(Bundle)
            .where(
                Bundle.token_hash == digest,
                Bundle.tool == tool,
                Bundle.used < Bundle.calls,
                Bundle.expires_at > now,
            )
            .values(used=Bundle.used + 1)
            .returning(Bundle)
        )
        row = taken.scalar_one_or_none()
        await session.commit()
        if row is not None:
            return _balance(row)
        known = await session.scalar(select(Bundle).where(Bundle.token_hash == digest))
    if known is None:
        return Unusable("unknown")
    if known.tool != tool:
        return Unusable("other_tool", known.tool)
    if known.expires_at <= now:
        return Unusable("expired")
    return Unusable("exhausted")


async def give_back(sessions: async_sessionmaker[AsyncSession], taken: Balance) -> Balance:
    """Return the call a failed call took: nothing is charged for a call that did not answer."""
    async with sessions() as session:
        returned = await session.execute(
            update(Bundle)
            .where(Bundle.pk == taken.bundle_pk, Bundle.used > 0)
            .values(used=Bundle.used - 1)
            .returning(Bundle)
        )
        row = returned.scalar_one_or_none()
        await session.commit()
    return _balance(row) if row is not None else taken


async def bought_with(
    sessions: async_sessionmaker[AsyncSession], payment_pk: int
) -> Balance | None:
    """The bundle a payment bought, if it bought one (a retry of that payment is told again)."""
    async with sessions() as session:
        row = await session.scalar(select(Bundle).where(Bundle.payment_pk == payment_pk))
    return _balance(row) if row is not None else None


async def balance(session: AsyncSession, token: str) -> Balance | None:
    """A bundle as it stands, without taking a call (``get_usage``)."""
    if not looks_like_token(token):
        return None
    row = await session.scalar(select(Bundle).where(Bundle.token_hash == hash_token(token)))
    return _balance(row) if row is not None else None

"""Dashboard sessions: a random token in the ``kamiyo_session`` cookie, its SHA-256 in
``dashboard_sessions``.

A session ends 7 days after log-in whatever happens (absolute), or after 24 hours unused
(idle). ``last_seen`` is written at most once a minute, so reading pages costs no write each.
"""

import datetime as dt
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from kamiyo.access.one_time_links import TOKEN_PATTERN, hash_token
from kamiyo.config import SiteSettings
from kamiyo.db.dashboard import DashboardSession

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

COOKIE = "kamiyo_session"
ABSOLUTE_LIFETIME = dt.timedelta(days=7)
IDLE_LIMIT = dt.timedelta(hours=24)
TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class LiveSession:
    token: str  # the cookie's value: never logged, never stored
    account_pk: int
    expires_at: dt.datetime


async def start(sessions: Sessions, account_pk: int) -> LiveSession:
    """A new session for ``account_pk``; its token goes into the cookie and nowhere else."""
    token = secrets.token_urlsafe(32)
    now = _now()
    expires = now + ABSOLUTE_LIFETIME
    async with sessions() as session:
        session.add(
            DashboardSession(
                token_hash=hash_token(token),
                account_pk=account_pk,
                created_at=now,
                expires_at=expires,
                last_seen=now,
            )
        )
        # Sessions that ended by time are of no use to anyone: sweep this account's.
        await session.execute(
            delete(DashboardSession).where(
                DashboardSession.account_pk == account_pk,
                (DashboardSession.expires_at <= now)
                | (DashboardSession.last_seen <= now - IDLE_LIMIT),
            )
        )
        await session.commit()
    log.info("dashboard session started for account %s", account_pk)
    return LiveSession(token, account_pk, expires)


async def find(sessions: Sessions, token: str | None) -> LiveSession | None:
    """The live session behind a cookie's value; None when there is none (or it has ended, in
    which case its row goes)."""
    if not token or not TOKEN_PATTERN.fullmatch(token):
        return None
    now = _now()
    token_hash = hash_token(token)
    async with sessions() as session:
        row = await session.scalar(
            select(DashboardSession).where(DashboardSession.token_hash == token_hash)
        )
        if row is None:
            return None
        if row.expires_at <= now or row.last_seen <= now - IDLE_LIMIT:
            await session.delete(row)
            await session.commit()
            log.info("dashboard session for account %s ended by time", row.account_pk)
            return None
        if row.last_seen <= now - TOUCH_EVERY:
            await session.execute(
                update(DashboardSession)
                .where(DashboardSession.token_hash == token_hash)
                .values(last_seen=now)
            )
            await session.commit()
        return LiveSession(token, row.account_pk, row.expires_at)


async def end(sessions: Sessions, token: str) -> None:
    async with sessions() as session:
        await session.execute(
            delete(DashboardSession).where(DashboardSession.token_hash == hash_token(token))
        )
        await session.commit()


def cookie_is_secure(site: SiteSettings) -> bool:
    """Secure, unless this server is reached over plain http on loopback (development), where
    a Secure cookie would never come back."""
    parts = urlsplit(site.public_url or "")
    if parts.scheme != "http":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def set_cookie(response: Response, live: LiveSession, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        live.token,
        max_age=int(ABSOLUTE_LIFETIME.total_seconds()),
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="lax")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

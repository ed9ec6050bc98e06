"""One-time log-in links: mailed on request, good for 15 minutes, used once.

Like onboarding's key links: only the SHA-256 of a token is stored, and making a link retires
the account's earlier unused ones, so only the newest link works. Asking with an unknown address
makes a free account (onboarding's rules), so signing up and logging in are one form.
"""

import datetime as dt
import logging
import secrets

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.accounts import is_active
from kamiyo.billing import onboarding
from kamiyo.billing.mailer import send_mail
from kamiyo.db.dashboard import LoginLink
from kamiyo.db.tables import Account

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

LINK_TTL = dt.timedelta(minutes=15)


def login_url(config: onboarding.Onboarding, token: str) -> str:
    return f"{onboarding.base_url(config.site)}/login/{token}"


async def request_login(sessions: Sessions, config: onboarding.Onboarding, address: str) -> None:
    """Mail ``address`` a log-in link, making its free account first if it has none.

    ``address`` is normalised. Raises SignupUnavailableError without a public URL, MailError
    when the mail server refuses.
    """
    onboarding.base_url(config.site)  # fail before anything is written
    account, created = await onboarding.find_or_create_account(sessions, address)
    if not is_active(account):
        log.info("log-in request for disabled account %s: nothing sent", account.pk)
        return
    async with sessions() as session:
        token = await _make_link(session, account.pk)
        await session.commit()
    link = login_url(config, token)
    opening = (
        f"Welcome to KAMIYO. A free account for {address} is ready."
        if created
        else f"Someone, probably you, asked to log in to KAMIYO as {address}."
    )
    text = (
        f"{opening}\n\nOpen this link within 15 minutes to log in to your dashboard. It works "
        f"once, and only the newest link sent to you works:\n\n  {link}\n\n"
        "If you did not ask for it, ignore this mail: nothing happens unless the link is used."
        "\n\n-- KAMIYO\n"
    )
    await send_mail(config.smtp, address, "Your KAMIYO log-in link", text, secrets=[link, token])


async def check(sessions: Sessions, token: str) -> bool:
    """Whether ``token`` would log in now. Reads only: a mail scanner's GET uses nothing up."""
    if not onboarding.TOKEN_PATTERN.fullmatch(token):
        return False
    async with sessions() as session:
        found = await session.scalar(
            select(LoginLink.token_hash).where(*_usable(onboarding.hash_token(token), _now()))
        )
    return found is not None


async def use(sessions: Sessions, token: str) -> int | None:
    """Use a link up: the account it logs into, or None when it is unknown, used, expired, or
    its account is disabled. The conditional UPDATE lets exactly one of concurrent uses
    through."""
    if not onboarding.TOKEN_PATTERN.fullmatch(token):
        return None
    now = _now()
    async with sessions() as session:
        claimed = await session.execute(
            update(LoginLink)
            .where(*_usable(onboarding.hash_token(token), now))
            .values(used_at=now)
            .returning(LoginLink.account_pk)
        )
        account_pk = claimed.scalar_one_or_none()
        if account_pk is None:
            await session.rollback()
            return None
        account = await session.get(Account, account_pk)
        await session.commit()
    if account is None or not is_active(account):
        log.info("log-in link used for disabled account %s: refused", account_pk)
        return None
    return account_pk


async def _make_link(session: AsyncSession, account_pk: int) -> str:
    now = _now()
    # Only the newest link works: retire the unused ones still live.
    await session.execute(
        update(LoginLink)
        .where(
            LoginLink.account_pk == account_pk,
            LoginLink.used_at.is_(None),
            LoginLink.expires_at > now,
        )
        .values(expires_at=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        LoginLink(
            token_hash=onboarding.hash_token(token),
            account_pk=account_pk,
            created_at=now,
            expires_at=now + LINK_TTL,
        )
    )
    log.info("log-in link made for account %s", account_pk)  # never the link itself
    return token


def _usable(token_hash: str, now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        LoginLink.token_hash == token_hash,
        LoginLink.used_at.is_(None),
        LoginLink.expires_at > now,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

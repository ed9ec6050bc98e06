"""One-time log-in links: mailed on request, good for 15 minutes, used once.

Like onboarding's key links: only the SHA-256 of a token is stored, and making a link retires
the account's earlier unused ones, so only the newest link works. Asking with an unknown address
makes a free account (onboarding's rules), so signing up and logging in are one form.
"""

import datetime as dt
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import one_time_links
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
    async with sessions() as session:
        return await one_time_links.is_live(session, LoginLink, token, _now())


async def use(sessions: Sessions, token: str) -> int | None:
    """Use a link up: the account it logs into, or None when it is unknown, used, expired, or
    its account is disabled. The conditional UPDATE lets exactly one of concurrent uses
    through."""
    now = _now()
    async with sessions() as session:
        account_pk = await one_time_links.use(session, LoginLink, token, now)
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
    token = await one_time_links.issue(session, LoginLink, account_pk, LINK_TTL, _now())
    log.info("log-in link made for account %s", account_pk)  # never the link itself
    return token


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

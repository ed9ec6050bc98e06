"""Sign-up, the welcome mail after a first payment, and one-time links that create API keys.

No API key is ever mailed or stored: a mail carries a link, the database keeps only the link's
SHA-256, and the key is made at the moment the link is used and shown once on that page.

Sign-up never tells the asker whether an address had an account: whoever asks gets the same
answer, and the mailbox owner gets a mail that says what happened. Rules, per account:

- a link is made only while the tier has a free seat (else the mail says how to free one);
- only the newest link works (making one retires the earlier unused ones), so at most one live
  link exists per account, and a lost mail is recovered by signing up again;
- at most ``MAX_LINKS_PER_HOUR`` links per hour come from sign-ups; beyond that nothing is
  sent, so a stranger cannot fill someone's mailbox (the web layer also limits per address).
"""

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import clients
from kamiyo.access import one_time_links
from kamiyo.access.accounts import (
    DEFAULT_GRACE,
    AccountError,
    create_account,
    current_tier,
    find_account,
    normalize_email,
)
from kamiyo.access.keys import NewKey, create_key
from kamiyo.billing.mailer import MailError, send_mail
from kamiyo.config import Settings, SiteSettings, SmtpSettings
from kamiyo.db.tables import Account, ApiKey, KeyReveal
from kamiyo.tiers import TIERS

log = logging.getLogger(__name__)

REVEAL_TTL = dt.timedelta(hours=24)
MAX_LINKS_PER_HOUR = 3
# secrets.token_urlsafe(32): 43 URL-safe characters. Anything else is not one of our tokens.
KEY_PLACEHOLDER = "PASTE_YOUR_KAMIYO_API_KEY_HERE"

Sessions = async_sessionmaker[AsyncSession]


class SignupUnavailableError(RuntimeError):
    """This server cannot mail working links (no public URL is configured)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one mail will offer: a fresh link, or a note that every seat is taken."""

    token: str | None
    active_keys: int
    tier: str


@dataclass(frozen=True, slots=True)
class Onboarding:
    """What sign-up and welcome mails need: where links point, the mail server, and the grace
    period that decides an account's tier."""

    site: SiteSettings
    smtp: SmtpSettings
    past_due_grace: dt.timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "Onboarding":
        grace = dt.timedelta(days=settings.stripe.past_due_grace_days)
        return cls(settings.site, settings.smtp, grace)


def base_url(site: SiteSettings) -> str:
    """Where links in mails point. Never the Host a request came with: a forged Host would
    send someone's one-time link to a stranger's server."""
    if not site.public_url:
        raise SignupUnavailableError(
            "KAMIYO_PUBLIC_URL is not set, so mails could not carry working links"
        )
    return site.public_url.rstrip("/")


def reveal_url(site: SiteSettings, token: str) -> str:
    return f"{base_url(site)}/keys/reveal/{token}"


def setup_snippet(site: SiteSettings, api_key: str = KEY_PLACEHOLDER) -> str:
    """Claude Desktop's config with this server as a remote connector (through mcp-remote)."""
    entry = clients.remote_server_entry(f"{base_url(site)}/mcp", api_key=api_key)
    return clients.merged_config(None, entry).rstrip("\n")


async def signup(session_factory: Sessions, config: Onboarding, email: str) -> None:
    """Make a free account for ``email`` unless it has one, and mail the address what to do.

    Raises AccountError for a malformed address, SignupUnavailableError without a public URL,
    MailError when the mail server refuses.
    """
    address = normalize_email(email)
    base_url(config.site)  # fail before anything is written
    account, created = await find_or_create_account(session_factory, address)
    if account.status != "active":
        log.info("sign-up for suspended account %s: nothing sent", account.pk)
        return
    async with session_factory() as session:
        plan = await _plan_link(session, config, account, throttle=True)
        await session.commit()
    if plan is None:
        log.info("sign-up for account %s: link limit reached, nothing sent", account.pk)
        return
    if created:
        subject = "Your KAMIYO account"
        opening = f"Welcome to KAMIYO. A free account for {address} is ready."
    else:
        subject = "Your KAMIYO account (already set up)"
        opening = (
            f"Someone, probably you, asked to sign up with {address}. This address already "
            "has a KAMIYO account, so no new account was made. If it was not you, ignore "
            "this mail: nothing changes unless the link below is used."
        )
    await _mail(config, address, subject, opening, plan)


async def send_welcome(session_factory: Sessions, config: Onboarding, account_pk: int) -> bool:
    """Mail a newly paying account its setup: the Claude Desktop config, the dashboard, and a
    one-time link to its key. True when a mail went out; failures are logged, never raised,
    so a mail server's trouble cannot fail the payment event that triggered this."""
    async with session_factory() as session:
        account = await session.get(Account, account_pk)
        if account is None or account.status != "active":
            log.warning("welcome mail for account %s skipped: no active account", account_pk)
            return False
        try:
            plan = await _plan_link(session, config, account, throttle=False)
        except SignupUnavailableError as exc:
            log.error("welcome mail for account %s not sent: %s", account_pk, exc)
            return False
        await session.commit()
    assert plan is not None  # only throttled plans come back empty
    opening = (
        f"Thank you for subscribing. Your account {account.email} is now on the {plan.tier} tier."
    )
    try:
        return await _mail(config, account.email, "Welcome to KAMIYO", opening, plan)
    except MailError:
        return False  # logged by the mailer


async def check_token(session_factory: Sessions, token: str) -> bool:
    """Whether ``token`` would work now. Reads only: looking at a link must not use it up."""
    async with session_factory() as session:
        return await one_time_links.is_live(session, KeyReveal, token, _now())


async def reveal_key(
    session_factory: Sessions, token: str, past_due_grace: dt.timedelta = DEFAULT_GRACE
) -> NewKey | None:
    """Use a one-time link: create the account's new key and return it once.

    None when the link is unknown, used or expired. Marking the link used and creating the key
    happen in one transaction, and the conditional UPDATE lets exactly one of any concurrent
    uses through. When the account has no free seat (or is suspended) an AccountError says so
    and the link stays unused, so it works again once a key is revoked.
    """
    now = _now()
    async with session_factory() as session:
        account_pk = await one_time_links.use(session, KeyReveal, token, now)
        if account_pk is None:
            await session.rollback()
            return None
        account = await session.get(Account, account_pk)
        if account is None or account.status != "active":
            await session.rollback()
            raise AccountError("this account is suspended; contact the operator")
        try:
            name = f"key from link, {now:%Y-%m-%d %H:%M} UTC"
            new = await create_key(session, account, name, past_due_grace)
        except AccountError:
            await session.rollback()
            raise
        await session.commit()
    log.info("one-time link used: key %s… created for account %s", new.prefix, account_pk)
    return new


async def find_or_create_account(session_factory: Sessions, address: str) -> tuple[Account, bool]:
    """The account for a normalised ``address``, made on the free tier when there is none;
    True when it was made now. Sign-up and the dashboard's log-in share it."""
    async with session_factory() as session:
        account = await find_account(session, address)
        if account is not None:
            return account, False
        try:
            account = await create_account(session, address)
            await session.commit()
            log.info("account %s created by sign-up", account.pk)  # or by a log-in request
            return account, True
        except (IntegrityError, AccountError):
            # A concurrent sign-up for the same address won the insert: use its account.
            await session.rollback()
    async with session_factory() as session:
        account = await find_account(session, address)
        if account is None:
            raise AccountError(f"could not create an account for {address}")
        return account, False


async def _plan_link(
    session: AsyncSession, config: Onboarding, account: Account, *, throttle: bool
) -> _Plan | None:
    """A new link for ``account`` when its tier has a free seat; None when throttled."""
    base_url(config.site)
    now = _now()
    tier = await current_tier(session, account, config.past_due_grace)
    seats = TIERS[tier].seats
    active = await session.scalar(
        select(func.count(ApiKey.pk)).where(
            ApiKey.account_pk == account.pk, ApiKey.revoked_at.is_(None)
        )
    )
    active = active or 0
    if seats is not None and active >= seats:
        return _Plan(token=None, active_keys=active, tier=tier.value)
    if throttle:
        recent = await session.scalar(
            select(func.count()).where(
                KeyReveal.account_pk == account.pk,
                KeyReveal.created_at > now - dt.timedelta(hours=1),
            )
        )
        if (recent or 0) >= MAX_LINKS_PER_HOUR:
            return None
    token = await one_time_links.issue(session, KeyReveal, account.pk, REVEAL_TTL, now)
    log.info("one-time key link made for account %s", account.pk)  # never the link itself
    return _Plan(token=token, active_keys=active, tier=tier.value)


async def _mail(config: Onboarding, to: str, subject: str, opening: str, plan: _Plan) -> bool:
    base = base_url(config.site)
    parts = [opening]
    link = reveal_url(config.site, plan.token) if plan.token else None
    if link:
        parts.append(
            "Open this link within 24 hours to create your API key. It works once, and only "
            f"the newest link sent to you works:\n\n  {link}\n\n"
            "The key is shown on that page, once. KAMIYO keeps only a fingerprint of it, so "
            "store it somewhere safe (a password manager)."
        )
    else:
        upgrade = f" or upgrade at {config.site.upgrade_url}" if config.site.upgrade_url else ""
        parts.append(
            f"Your account already has {plan.active_keys} active API key(s), all the "
            f"{plan.tier} tier allows, so no link to a new key was made. Revoke a key on "
            f"the dashboard ({base}/dashboard){upgrade}, then ask again."
        )
    parts.append(
        "To use KAMIYO from Claude Desktop, add this to claude_desktop_config.json and put "
        "your key in place of the placeholder:\n\n"
        + _indent(setup_snippet(config.site))
        + "\n\nWhere the file is: macOS ~/Library/Application Support/Claude/, Windows "
        "%APPDATA%\\Claude\\, Linux ~/.config/Claude/. Restart Claude Desktop afterwards."
    )
    parts.append(f"Your dashboard (keys, usage, billing): {base}/dashboard")
    text = "\n\n".join(parts) + "\n\n-- KAMIYO\n"
    return await send_mail(
        config.smtp, to, subject, text, secrets=[s for s in (link, plan.token) if s]
    )


def _indent(block: str) -> str:
    return "\n".join("  " + line for line in block.splitlines())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

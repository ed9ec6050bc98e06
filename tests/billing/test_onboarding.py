"""Sign-up, one-time key links and the welcome mail, on both databases, with real SMTP."""

import asyncio
import datetime as dt
import json
import logging
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys, one_time_links
from kamiyo.billing import onboarding
from kamiyo.billing.mailer import MailError, send_mail
from kamiyo.billing.onboarding import Onboarding
from kamiyo.clients import SERVER_NAME
from kamiyo.db.tables import Account, KeyReveal
from kamiyo.tiers import Tier
from tests.billing.conftest import PUBLIC_URL, billing_settings
from tests.billing.smtp import USERNAME, Mailbox, Received
from tests.billing.stripe_fake import FakeStripe
from tests.mcpserver.conftest import run_kamiyo

pytestmark = pytest.mark.anyio

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def settings_for(
    migrated_database_url: str, fake_stripe: FakeStripe, mailbox: Mailbox
) -> Onboarding:
    return Onboarding.from_settings(billing_settings(migrated_database_url, fake_stripe, mailbox))


@pytest.fixture
def sessions(migrated_sessions: Sessions) -> Sessions:
    """Here: a fresh, empty database of each backend (not the shared loaded one)."""
    return migrated_sessions


def token_of(mail: Received) -> str:
    [link] = mail.reveal_links()
    assert link.startswith(f"{PUBLIC_URL}/keys/reveal/")
    return link.rsplit("/", 1)[1]


async def count_accounts(sessions: Sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count(Account.pk))) or 0


async def test_signup_makes_one_account_and_mails_a_link(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    await onboarding.signup(sessions, settings_for, "  New.Person@Example.com ")
    [mail] = mailbox.wait_for(1)
    assert mail.recipients == ["new.person@example.com"]
    assert mail.logged_in_as == USERNAME
    assert "A free account for new.person@example.com is ready" in mail.text
    token = token_of(mail)
    async with sessions() as session:
        stored = (await session.scalars(select(KeyReveal))).all()
    # Only the token's hash is kept, for 24 hours; no key exists until the link is used.
    assert [r.token_hash for r in stored] == [one_time_links.hash_token(token)]
    assert stored[0].expires_at - stored[0].created_at == dt.timedelta(hours=24)
    assert keys.KEY_PREFIX not in mail.text
    assert await count_accounts(sessions) == 1


async def test_signing_up_again_makes_no_second_account_and_only_the_newest_link_works(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    await onboarding.signup(sessions, settings_for, "again@example.com")
    await onboarding.signup(sessions, settings_for, "AGAIN@example.com")
    first, second = mailbox.wait_for(2)
    assert await count_accounts(sessions) == 1
    assert "already has a KAMIYO account" in second.text
    assert await onboarding.reveal_key(sessions, token_of(first)) is None
    assert await onboarding.reveal_key(sessions, token_of(second)) is not None


async def test_concurrent_signups_for_one_address_make_one_account(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    await asyncio.gather(
        *(onboarding.signup(sessions, settings_for, "race@example.com") for _ in range(3))
    )
    assert await count_accounts(sessions) == 1


async def test_signups_beyond_the_hourly_link_limit_send_nothing(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    for _ in range(onboarding.MAX_LINKS_PER_HOUR + 2):
        await onboarding.signup(sessions, settings_for, "flood@example.com")
    assert len(mailbox.wait_for(onboarding.MAX_LINKS_PER_HOUR)) == onboarding.MAX_LINKS_PER_HOUR
    await asyncio.sleep(0.2)  # nothing more arrives (the sends above were awaited)
    assert len(mailbox.received) == onboarding.MAX_LINKS_PER_HOUR


async def test_an_account_with_every_seat_taken_gets_a_note_without_a_link(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    async with sessions() as session:
        account = await accounts.create_account(session, "full@example.com")
        await keys.create_key(session, account, "laptop")
        await session.commit()
    await onboarding.signup(sessions, settings_for, "full@example.com")
    [mail] = mailbox.wait_for(1)
    assert mail.reveal_links() == []
    assert "1 active API key(s), all the free tier allows" in mail.text
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(KeyReveal)) == 0


async def test_a_link_makes_a_working_key_once(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    await onboarding.signup(sessions, settings_for, "once@example.com")
    token = token_of(mailbox.wait_for(1)[0])
    assert await onboarding.check_token(sessions, token)
    assert await onboarding.check_token(sessions, token)  # looking uses nothing up
    new = await onboarding.reveal_key(sessions, token)
    assert new is not None
    assert new.key.startswith(keys.KEY_PREFIX)
    async with sessions() as session:
        found = await keys.account_for_key(session, new.key)
    assert found is not None
    assert found[0].email == "once@example.com"
    assert await onboarding.reveal_key(sessions, token) is None
    assert not await onboarding.check_token(sessions, token)


async def test_concurrent_uses_of_a_link_make_one_key(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    async with sessions() as session:
        # Enterprise: unlimited seats, so only the link can stop a second key.
        await accounts.create_account(session, "twice@example.com", Tier.ENTERPRISE)
        await session.commit()
    await onboarding.signup(sessions, settings_for, "twice@example.com")
    token = token_of(mailbox.wait_for(1)[0])
    results = await asyncio.gather(*(onboarding.reveal_key(sessions, token) for _ in range(5)))
    assert len([r for r in results if r is not None]) == 1
    async with sessions() as session:
        account = await accounts.find_account(session, "twice@example.com")
        assert account is not None
        assert len(await keys.list_keys(session, account)) == 1


async def test_expired_unknown_and_malformed_links_make_nothing(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    await onboarding.signup(sessions, settings_for, "late@example.com")
    token = token_of(mailbox.wait_for(1)[0])
    async with sessions() as session:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await session.execute(update(KeyReveal).values(expires_at=past))
        await session.commit()
    assert await onboarding.reveal_key(sessions, token) is None
    assert await onboarding.reveal_key(sessions, "x" * 43) is None
    assert await onboarding.reveal_key(sessions, "../../etc") is None


async def test_a_full_account_is_told_so_and_the_link_survives(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    await onboarding.signup(sessions, settings_for, "seat@example.com")
    token = token_of(mailbox.wait_for(1)[0])
    async with sessions() as session:
        account = await accounts.find_account(session, "seat@example.com")
        assert account is not None
        taken = await keys.create_key(session, account, "made meanwhile")
        await session.commit()
    with pytest.raises(accounts.AccountError, match="all its tier allows"):
        await onboarding.reveal_key(sessions, token)
    async with sessions() as session:
        await keys.revoke_key(session, taken.prefix)
        await session.commit()
    assert await onboarding.reveal_key(sessions, token) is not None


async def test_welcome_mail_has_the_setup_without_a_key_and_a_working_link(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    async with sessions() as session:
        account = await accounts.create_account(session, "paid@example.com", Tier.PERSONAL)
        await keys.create_key(session, account, "from the free days")  # 1 of 2 seats
        await session.commit()
    assert await onboarding.send_welcome(sessions, settings_for, account.pk)
    [mail] = mailbox.wait_for(1)
    assert mail.message["Subject"] == "Welcome to KAMIYO"
    assert "personal tier" in mail.text
    assert f"{PUBLIC_URL}/dashboard" in mail.text
    assert keys.KEY_PREFIX not in mail.text
    # The snippet is Claude Desktop's config shape, naming this server, with a placeholder key.
    start = mail.text.index("  {")
    end = mail.text.index("\n  }\n", start) + 4
    config = json.loads(mail.text[start:end])
    entry = config["mcpServers"][SERVER_NAME]
    assert entry["command"] == "npx"
    assert f"{PUBLIC_URL}/mcp" in entry["args"]
    assert entry["env"]["KAMIYO_AUTHORIZATION"] == f"Bearer {onboarding.KEY_PLACEHOLDER}"
    new = await onboarding.reveal_key(sessions, token_of(mail))
    assert new is not None
    async with sessions() as session:
        assert await keys.account_for_key(session, new.key) is not None


async def test_welcome_for_a_missing_account_sends_nothing(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    assert not await onboarding.send_welcome(sessions, settings_for, 424242)
    assert mailbox.received == []


async def test_without_a_mail_server_the_log_shows_the_mail_but_not_the_link(
    sessions: Sessions, settings_for: Onboarding, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(settings_for, smtp=settings_for.smtp.model_copy(update={"host": None}))
    with caplog.at_level(logging.INFO, logger="kamiyo.billing"):
        await onboarding.signup(sessions, settings, "nomail@example.com")
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "mail is off" in warning.getMessage()
    assert "nomail@example.com" in warning.getMessage()
    async with sessions() as session:
        [reveal] = (await session.scalars(select(KeyReveal))).all()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/keys/reveal/" not in logged
    assert "one-time link withheld" in logged
    assert reveal.token_hash not in logged


async def test_a_mail_server_that_is_down_is_a_mail_error(
    settings_for: Onboarding,
) -> None:
    smtp = settings_for.smtp.model_copy(update={"port": _closed_port()})
    with pytest.raises(MailError):
        await send_mail(smtp, "x@example.com", "subject", "text")


async def test_signup_needs_a_public_url_and_a_real_address(
    sessions: Sessions, settings_for: Onboarding, mailbox: Mailbox
) -> None:
    with pytest.raises(onboarding.SignupUnavailableError):
        await onboarding.signup(
            sessions,
            replace(settings_for, site=settings_for.site.model_copy(update={"public_url": None})),
            "a@example.com",
        )
    with pytest.raises(accounts.AccountError):
        await onboarding.signup(sessions, settings_for, "not-an-address")
    assert await count_accounts(sessions) == 0
    assert mailbox.received == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_signup_says_the_same_for_new_and_known_addresses(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    env = mailbox.env() | {"KAMIYO_PUBLIC_URL": PUBLIC_URL}
    answers = []
    for _ in range(2):
        proc = run_kamiyo(tmp_path, "signup", "cli@example.com", env=env)
        assert proc.stdout == ""
        assert "created" not in proc.stderr
        answers.append(proc.stderr.splitlines()[-1])
    assert answers[0] == answers[1]
    assert "check your email" in answers[0]
    first, second = mailbox.wait_for(2)
    assert first.reveal_links()
    assert second.reveal_links()
    bad = run_kamiyo(tmp_path, "signup", "nope", env=env, check=False)
    assert bad.returncode == 2
    assert "not an email address" in bad.stderr

"""Log-in by mailed link: the link works once, sessions live in a cookie with the right flags,
forms need their CSRF token, sessions end by log-out and by time, log-in requests are limited."""

import datetime as dt

import pytest
from sqlalchemy import select, update

from kamiyo.access import accounts
from kamiyo.access.one_time_links import hash_token
from kamiyo.db.dashboard import DashboardSession, LoginLink
from kamiyo.web.access_log import logged_path
from kamiyo.web.dashboard import sessions
from kamiyo.web.dashboard.throttle import LOGINS_PER_ADDRESS, LOGINS_PER_PEER
from tests.web.dashboard.conftest import Site

pytestmark = pytest.mark.anyio


async def test_a_new_address_gets_an_account_and_a_link_that_logs_in_once(site: Site) -> None:
    link = await site.login_link("New@Example.com")
    async with site.sessions() as session:
        account = await accounts.find_account(session, "new@example.com")
    assert account is not None
    [mail] = site.mailbox.to("new@example.com")
    assert "free account" in mail.text
    assert "15 minutes" in mail.text

    shown = await site.http.get(link)  # a mail scanner's GET uses nothing up
    assert shown.status_code == 200
    assert "Log in</button>" in shown.text
    assert shown.headers["referrer-policy"] == "no-referrer"
    assert shown.headers["cache-control"] == "no-store"
    assert (await site.http.get(link)).status_code == 200

    used = await site.http.post(link)
    assert used.status_code == 303
    assert used.headers["location"] == "/dashboard"
    cookie = used.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= flags
    token = site.http.cookies[sessions.COOKIE]
    async with site.sessions() as session:
        row = await session.get(DashboardSession, hash_token(token))
    assert row is not None
    assert row.account_pk == account.pk
    assert row.expires_at - row.created_at == sessions.ABSOLUTE_LIFETIME

    home = await site.http.get("/dashboard")
    assert home.status_code == 200
    assert "new@example.com" in home.text
    again_login = await site.http.get("/login")  # logged in already: to the dashboard
    assert again_login.status_code == 303
    assert again_login.headers["location"] == "/dashboard"

    again = await site.browser().post(link)  # a second use, from anywhere, is refused
    assert again.status_code == 410
    assert sessions.COOKIE not in again.cookies
    assert (await site.browser().get(link)).status_code == 410


async def test_a_known_address_gets_the_same_answer_and_only_the_newest_link_works(
    site: Site,
) -> None:
    async with site.sessions() as session:
        await accounts.create_account(session, "known@example.com")
        await session.commit()
    first = await site.login_link("known@example.com")
    second = await site.login_link("known@example.com")
    assert "already" not in site.mailbox.to("known@example.com")[0].text.lower()
    assert "asked to log in" in site.mailbox.to("known@example.com")[0].text
    assert (await site.http.post(first)).status_code == 410
    assert (await site.http.post(second)).status_code == 303
    async with site.sessions() as session:
        stored = set(await session.scalars(select(LoginLink.token_hash)))
    assert hash_token(second.rpartition("/")[2]) in stored
    assert second.rpartition("/")[2] not in stored


async def test_a_malformed_address_is_told_so_and_nothing_is_mailed(site: Site) -> None:
    answer = await site.http.post("/login", data={"email": "not-an-address"})
    assert answer.status_code == 400
    assert "not an email address" in answer.text
    assert 'aria-invalid="true"' in answer.text
    huge = await site.http.post("/login", data={"email": "a@example.com", "pad": "x" * 20_000})
    assert huge.status_code == 413
    assert "limited to 16384 bytes" in huge.text
    assert site.mailbox.received == []


async def test_pages_need_a_session_and_an_expired_one_goes_to_the_log_in_page(
    site: Site,
) -> None:
    for path in ("/dashboard", "/dashboard/keys", "/dashboard/setup", "/dashboard/plan"):
        answer = await site.http.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/login"
    await site.log_in("idle@example.com")
    token = site.http.cookies[sessions.COOKIE]
    async with site.sessions() as session:
        await session.execute(
            update(DashboardSession).values(
                last_seen=dt.datetime.now(dt.UTC) - sessions.IDLE_LIMIT - dt.timedelta(seconds=1)
            )
        )
        await session.commit()
    answer = await site.http.get("/dashboard")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    async with site.sessions() as session:  # the ended session's row is gone
        assert await session.get(DashboardSession, hash_token(token)) is None

    await site.log_in("idle@example.com")
    async with site.sessions() as session:  # absolute lifetime, however recently used
        await session.execute(update(DashboardSession).values(expires_at=dt.datetime.now(dt.UTC)))
        await session.commit()
    assert (await site.http.get("/dashboard")).status_code == 303


async def test_posts_without_the_csrf_token_are_refused_and_logout_ends_the_session(
    site: Site,
) -> None:
    csrf = await site.log_in("csrf@example.com")
    refused = await site.http.post("/logout")
    assert refused.status_code == 403
    assert "security token" in refused.text
    wrong = await site.http.post("/logout", data={"csrf_token": "0" * 64})
    assert wrong.status_code == 403
    stranger = site.browser(cookies={sessions.COOKIE: "x" * 43})
    other = await stranger.post("/logout", data={"csrf_token": csrf})
    assert other.status_code == 303  # no session: to the log-in page, nothing ended
    assert (await site.http.get("/dashboard")).status_code == 200

    out = await site.http.post("/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert sessions.COOKIE not in site.http.cookies
    async with site.sessions() as session:
        assert list(await session.scalars(select(DashboardSession))) == []


async def test_session_less_posts_from_another_site_are_refused(site: Site) -> None:
    foreign = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    answer = await site.http.post("/login", data={"email": "a@example.com"}, headers=foreign)
    assert answer.status_code == 403
    link = await site.login_link("victim@example.com")
    assert (
        await site.http.post(link, headers={"Origin": "https://evil.example"})
    ).status_code == 403
    assert (
        await site.http.post(link, headers={"Sec-Fetch-Site": "same-origin"})
    ).status_code == 303


async def test_log_in_requests_are_limited_per_peer_and_per_address(site: Site) -> None:
    for _ in range(LOGINS_PER_ADDRESS.amount):
        await site.login_link("often@example.com")
    before = len(site.mailbox.received)
    same = await site.browser().post("/login", data={"email": "often@example.com"})
    assert same.status_code == 200  # the same answer, and no mail
    assert "Check your email" in same.text
    for _ in range(LOGINS_PER_PEER.amount - LOGINS_PER_ADDRESS.amount - 1):
        assert (await site.http.post("/login", data={"email": "x@example.com"})).status_code == 200
    limited = await site.http.post("/login", data={"email": "y@example.com"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    await site.mailbox.arrived(before + LOGINS_PER_PEER.amount - LOGINS_PER_ADDRESS.amount - 1)
    assert len(site.mailbox.to("often@example.com")) == LOGINS_PER_ADDRESS.amount


async def test_the_access_log_hides_log_in_tokens(site: Site) -> None:
    token = "A" * 43
    assert logged_path(f"/login/{token}") == "/login/[token]"
    assert token not in logged_path(f"/login/{token}?x=1")

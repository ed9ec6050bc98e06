"""The consent page with a log-in session (``account_of``): who is logged in consents without
a key; nobody logged in is sent to the log-in page and back."""

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request

from kamiyo.access import accounts
from kamiyo.config import AuthSettings, SiteSettings
from kamiyo.tiers import Tier
from kamiyo.web import oauth
from kamiyo.web.oauth_limits import OAuthLimits
from tests.web.oauth_helpers import BASE, REDIRECT, hidden_fields, oauth_settings, pkce, query_of

pytestmark = pytest.mark.anyio


@dataclass
class Browser:
    http: httpx2.AsyncClient
    account_pk: int
    logged_in: list[int]  # the account the "session" names, if any


@pytest.fixture
async def browser(
    migrated_sessions: async_sessionmaker[AsyncSession], migrated_database_url: str
) -> AsyncIterator[Browser]:
    async with migrated_sessions() as session:
        account = await accounts.create_account(session, "team@example.com", Tier.TEAM)
        await session.commit()
        pk = account.pk
    logged_in: list[int] = []

    async def account_of(request: Request) -> int | None:
        # Stands in for the dashboard's cookie session: the account it names, or None.
        return logged_in[0] if logged_in else None

    settings = oauth_settings(migrated_database_url)
    routes = oauth.routes(
        settings,
        lambda: migrated_sessions,
        limits=OAuthLimits(settings),
        account_of=account_of,
        login_path="/login",
    )
    transport = httpx2.ASGITransport(app=Starlette(routes=routes))
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
        yield Browser(http, pk, logged_in)


async def _consent_url(browser: Browser) -> tuple[str, str]:
    registered = await browser.http.post(
        "/oauth/register",
        json={
            "redirect_uris": [REDIRECT],
            "client_name": "Session Host",
            "token_endpoint_auth_method": "none",
        },
    )
    verifier, challenge = pkce()
    sent = await browser.http.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": registered.json()["client_id"],
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "state": "s",
        },
    )
    return sent.headers["location"], verifier


async def test_nobody_logged_in_is_offered_the_log_in_page_and_a_key(browser: Browser) -> None:
    location, _ = await _consent_url(browser)
    page = await browser.http.get(location)
    assert page.status_code == 200
    assert 'name="api_key"' in page.text
    [link] = re.findall(r'<a href="([^"]+)">Log in with your email</a>', page.text)
    target = urlsplit(html.unescape(link))
    assert target.path == "/login"
    [back] = parse_qs(target.query)["next"]
    assert BASE + back == location


async def test_the_logged_in_account_consents_without_a_key(browser: Browser) -> None:
    browser.logged_in.append(browser.account_pk)
    location, _ = await _consent_url(browser)
    page = await browser.http.get(location)
    assert page.status_code == 200
    assert "use KAMIYO's tools as team@example.com on your team plan" in page.text
    assert 'name="api_key"' not in page.text
    form = hidden_fields(page.text) | {"decision": "approve"}
    back = await browser.http.post("/oauth/authorize", data=form)
    assert back.status_code == 302
    answer = query_of(back.headers["location"])
    assert set(answer) == {"code", "state", "iss"}
    assert answer["iss"] == BASE  # RFC 9207


def test_the_authorization_server_is_served_only_for_a_fit_public_url() -> None:
    def issuer(public_url: str | None, servers: list[str] | None = None) -> str | None:
        site = SiteSettings(public_url=public_url, _env_file=None)
        auth = AuthSettings(authorization_servers=servers or [], _env_file=None)
        return oauth.served_issuer(site, auth)

    assert issuer("https://kamiyo.example/") == "https://kamiyo.example"
    assert issuer("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert issuer(None) is None  # no stable issuer: clients compare it exactly
    assert issuer("http://kamiyo.example") is None  # RFC 8414: https (or loopback)
    assert issuer("https://kamiyo.example", ["https://auth.example"]) is None  # an external one

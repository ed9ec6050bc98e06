"""OAuth consent as a person meets it: a host sends the browser to the consent page, nobody is
logged in, the page offers the log-in page; the mailed link, used in this browser, comes back
to the consent page, which now names the logged-in account; its approval gives the host a
code for that account."""

import html
import re
from urllib.parse import urlsplit

import httpx2
import pytest

from kamiyo.web.dashboard.login import NEXT_COOKIE, safe_next
from tests.billing.conftest import PUBLIC_URL
from tests.web.dashboard.conftest import CSRF_FIELD, Site
from tests.web.oauth_helpers import hidden_fields, pkce, query_of

pytestmark = pytest.mark.anyio

REDIRECT = "http://127.0.0.1:33418/callback"
LOGIN_LINK = re.compile(r'<a href="([^"]+)">Log in with your email</a>')


async def consent_page(site: Site) -> tuple[str, str, str]:
    """A registered host's authorization request: the consent page's path, the client id and
    the PKCE verifier."""
    registered = await site.http.post(
        "/oauth/register",
        json={
            "redirect_uris": [REDIRECT],
            "client_name": "Remote Host",
            "token_endpoint_auth_method": "none",
        },
    )
    assert registered.status_code == 201, registered.text
    verifier, challenge = pkce()
    client_id = registered.json()["client_id"]
    sent = await site.http.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st",
            "resource": PUBLIC_URL + "/mcp",
        },
    )
    assert sent.status_code == 302, sent.text
    return sent.headers["location"].removeprefix(PUBLIC_URL), client_id, verifier


async def test_a_person_logs_in_by_mail_and_comes_back_to_consent(site: Site) -> None:
    consent, client_id, verifier = await consent_page(site)
    page = await site.http.get(consent)
    assert page.status_code == 200
    assert "Remote Host" in page.text
    [login] = LOGIN_LINK.findall(page.text)
    login = html.unescape(login)
    assert urlsplit(login).path == "/login"
    # The log-in page keeps where to come back to; the mailed link, used here, goes there.
    form = await site.http.get(login)
    assert form.status_code == 200
    assert NEXT_COOKIE in form.cookies
    link = await site.login_link("Consenter@Example.com")
    used = await site.http.post(link)
    assert used.status_code == 303
    assert used.headers["location"] == consent
    page = await site.http.get(consent)
    assert "use KAMIYO's tools as consenter@example.com on your free plan" in page.text
    approved = await site.http.post(
        "/oauth/authorize", data=hidden_fields(page.text) | {"decision": "approve"}
    )
    assert approved.status_code == 302
    answer = query_of(approved.headers["location"])
    assert set(answer) == {"code", "state", "iss"}
    tokens = await site.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "code_verifier": verifier,
            "client_id": client_id,
            "redirect_uri": REDIRECT,
        },
    )
    assert tokens.status_code == 200, tokens.text
    # The account sees the host among its connected apps, and revokes it there.
    listed = await site.http.get("/dashboard/clients")
    assert "Remote Host" in listed.text
    csrf = str(CSRF_FIELD.findall(listed.text)[0])
    revoked = await site.http.post(
        "/dashboard/clients/revoke", data={"csrf_token": csrf, "client_id": client_id}
    )
    assert revoked.status_code == 303
    assert "No app has access" in (await site.http.get(revoked.headers["location"])).text
    refreshed = await site.http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens.json()["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.status_code == 400


async def test_a_log_in_returns_only_to_our_own_pages(site: Site) -> None:
    assert safe_next("/oauth/authorize?client_id=x") == "/oauth/authorize?client_id=x"
    assert safe_next("/dashboard/keys") == "/dashboard/keys"
    for hostile in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "/dashboards",
        "/oauth/authorizex",
        "/login",
        "",
        "/dashboard\n",
        "/dashboard/" + "a" * 5000,
    ]:
        assert safe_next(hostile) is None, hostile
    # A hostile next is not kept: the link goes to the dashboard.
    browser: httpx2.AsyncClient = site.browser()
    async with browser:
        form = await browser.get("/login", params={"next": "https://evil.example/"})
        assert NEXT_COOKIE not in form.cookies
        used = await browser.post(await site.login_link("plain@example.com", browser))
        assert used.headers["location"] == "/dashboard"

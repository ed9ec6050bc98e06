"""A client we did not write connects over OAuth: the MCP Inspector's CLI, with no key, against
``/mcp`` of a server that serves nobody anonymous. It registers itself and prints the
authorization URL; a signed-in person opens it, reads on the consent page who asks for what,
and allows (the CLI then exchanges the code and calls a tool) or denies (the CLI stops with a
clear message, and no code or grant exists)."""

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from kamiyo.web.oauth_consent import DENIED
from tests.browser import a11y
from tests.browser.conftest import new_address
from tests.browser.harness import Served, shoot
from tests.browser.inspector import inspector

CLIENT_NAME = "MCP Inspector"  # what the Inspector registers itself as (RFC 7591)
RONIN = "20220329_ronin-network"  # the bundled data's Ronin bridge incident


@pytest.fixture(scope="module")
def served(strict_served: Served) -> Served:
    """An app refusing callers without a credential: only then does a client start OAuth."""
    return strict_served


def _client_id(authorization_url: str) -> str:
    return parse_qs(urlsplit(authorization_url).query)["client_id"][0]


def _rows(served: Served, table: str, client_id: str) -> int:
    """How many rows of the app's OAuth ``table`` belong to ``client_id``."""
    query = f"SELECT count(*) FROM {table} WHERE client_id = ?"  # table: this module's names
    return int(served.scalar(query, client_id))


def _check_consent_page(page: Page, who: str) -> None:
    """What the consent page on screen says (the client, what it gets, as ``who``); that
    axe-core finds nothing on it and that Tab reaches its controls in order."""
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Allow {CLIENT_NAME} to use KAMIYO?")
    main = page.get_by_role("main")
    expect(main).to_contain_text(f"{CLIENT_NAME} (it will return to 127.0.0.1:")
    expect(main).to_contain_text(f"asks to use KAMIYO's tools as {who}")
    assert a11y.violations(page) == []
    expected = a11y.controls(page)  # the keyboard reaches both answers, in order
    assert expected[-2:] == ["button: Allow", "button: Deny"]
    assert a11y.tab_order(page, len(expected)) == expected


def test_inspector_connects_over_oauth_and_calls_a_tool(
    logged_in_page: Page, served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = logged_in_page
    started = time.monotonic()
    with inspector(f"{served.url}/mcp", tmp_path, "search_exploits", {"query": "ronin"}) as run:
        url = run.authorization_url()
        assert url.startswith(f"{served.url}/oauth/authorize?")
        page.goto(url)
        _check_consent_page(page, "shared-")
        expect(page.get_by_role("main")).to_contain_text("on your free plan")
        shoot(page, "oauth-consent")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{run.callback_url}?*")  # the Inspector's listener took the code
        finished = run.finished()
    flow_s = time.monotonic() - started
    with capsys.disabled():
        print(f"\nMCP Inspector OAuth flow (register, consent, token, call) in {flow_s:.1f} s")

    result = finished.result()
    assert result["isError"] is False
    incidents = result["structuredContent"]["incidents"]
    assert RONIN in [incident["id"] for incident in incidents], incidents
    assert run.opened() == [url]  # it "opened a browser": the harmless opener
    assert _rows(served, "oauth_grants", _client_id(url)) == 1

    page.goto("/dashboard/clients")
    expect(page.get_by_role("row").filter(has_text=_client_id(url))).to_contain_text(CLIENT_NAME)


@pytest.mark.parametrize("logs_in", [False, True], ids=["logged-out", "logs-in-first"])
def test_inspector_stops_when_the_person_denies(
    page: Page, served: Served, tmp_path: Path, logs_in: bool
) -> None:
    """A person not logged in in this browser denies at once (no key needed to say no), or
    logs in from the consent page, comes back to it and denies."""
    with inspector(f"{served.url}/mcp", tmp_path, "search_exploits", {"query": "ronin"}) as run:
        url = run.authorization_url()
        page.goto(url)
        _check_consent_page(page, "the account of the API key you enter")
        if logs_in:
            address = new_address("consent")
            page.get_by_role("link", name="Log in with your email").click()
            page.get_by_label("Email address").fill(address)
            page.get_by_role("button", name="Mail me a log-in link").click()
            page.goto(served.link_in_newest_mail(address, 1))
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{served.url}/oauth/authorize?consent=*")  # back where it left
            _check_consent_page(page, f"{address} on your free plan")
        else:
            shoot(page, "oauth-consent-logged-out")
        page.get_by_role("button", name="Deny").click()
        page.wait_for_url(f"{run.callback_url}?*")
        assert parse_qs(urlsplit(page.url).query)["error"] == ["access_denied"]
        shoot(page, "oauth-denied-callback")
        finished = run.finished()

    assert finished.error() == DENIED  # the server's error_description, as the CLI prints it
    assert finished.stdout == ""
    for table in ("oauth_codes", "oauth_grants"):
        assert _rows(served, table, _client_id(url)) == 0, table

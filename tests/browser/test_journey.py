"""A new user in a real browser: sign-up by mailed link -> a key -> Claude Desktop's config on
the clipboard -> that config works on /mcp -> revoke the key -> it stops working."""

import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import new_address
from tests.browser.harness import (
    Served,
    accept_dialogs,
    call_tool,
    mcp_status,
    remote_connection,
    replace_text,
    shoot,
)

# What a key looks like in the screenshots that go into docs/ (never a real key).
FAKE_KEY = "kmy_live_EXAMPLEexampleEXAMPLEexampleEXAMPLE"
NAME = "laptop, Claude Desktop"


def test_sign_up_to_a_working_claude_config_and_revoke(
    page: Page, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    address = new_address("journey")
    started = time.monotonic()
    page.goto("/login")
    shoot(page, "login")
    page.get_by_label("Email address").fill(address)
    page.get_by_role("button", name="Mail me a log-in link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    shoot(page, "login-check-your-email")
    page.goto(served.link_in_newest_mail(address, 1))
    shoot(page, "login-link")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{served.url}/dashboard")
    expect(page.get_by_text(address)).to_be_visible()
    shoot(page, "dashboard")

    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    shoot(page, "keys-empty")
    page.get_by_label("Name").fill(NAME)
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()
    key = page.locator("#new-key").inner_text().strip()
    page.get_by_role("button", name="Copy the Claude Desktop configuration").click()
    expect(page.get_by_role("status")).to_have_text("Copied to the clipboard.")
    config = str(page.evaluate("navigator.clipboard.readText()"))
    clicks_s = time.monotonic() - started
    with capsys.disabled():
        print(f"\nsign-up to working config in {clicks_s:.1f} s")

    assert config == page.locator("#config-claude-desktop").inner_text()
    url, headers = remote_connection(config)
    assert url == f"{served.url}/mcp"
    assert headers == {"Authorization": f"Bearer {key}"}
    found = call_tool(url, headers, "search_exploits", {"query": "Euler", "limit": 1})
    assert found["incidents"], found

    replace_text(page, key, FAKE_KEY)  # the screenshot goes into docs/
    shoot(page, "key-created")

    page.get_by_role("link", name="Back to your keys").click()
    row = page.get_by_role("row").filter(has_text=NAME)
    # The call shows as the key's last use once the meter has written it (every second).
    for _ in range(50):
        if "never" not in row.inner_text():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(row).not_to_contain_text("never")
    shoot(page, "keys")

    dialogs = accept_dialogs(page)
    row.get_by_role("button", name=f"Revoke the key {NAME}").click()
    expect(row).to_contain_text("revoked")
    assert dialogs == [
        "Revoke the key “laptop, Claude Desktop”? Clients using it stop working at once."
    ]
    shoot(page, "keys-revoked")
    status, body = mcp_status(url, headers)
    assert status == 401
    assert "Unknown or revoked API key." in body

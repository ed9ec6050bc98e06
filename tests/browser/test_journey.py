"""A new user in a real browser: sign-up by mailed link -> a key -> Claude Desktop's config on
the clipboard -> that config works on /mcp -> revoke the key -> it stops working. Then the
other pages on the way: log-out, a used or superseded log-in link, a form whose CSRF token was
tampered with, the plan page of a server without Stripe, the set-up page before a key.

(One module, so one served app: each costs seconds to start.)"""

import time

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from kamiyo.billing.onboarding import KEY_PLACEHOLDER
from kamiyo.tiers import TIERS, Tier
from kamiyo.web.dashboard.plan_page import BILLING_OFF
from tests.browser.conftest import new_address, new_context
from tests.browser.harness import (
    Guard,
    Served,
    accept_dialogs,
    ask_for_link,
    call_tool,
    log_in,
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

    replace_text(page, key, FAKE_KEY)  # the screenshots go into docs/
    shoot(page, "key-created")
    page.evaluate("() => window.scrollTo(0, 0)")
    shoot(page, "key-created-window", full_page=False)

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


def test_log_out_ends_the_session(page: Page, served: Served) -> None:
    log_in(page, served, new_address("logout"))
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{served.url}/login")
    shoot(page, "logged-out")
    cookies = [cookie["name"] for cookie in page.context.cookies()]
    assert "kamiyo_session" not in cookies
    page.goto("/dashboard/keys")  # the pages need a session again
    expect(page).to_have_url(f"{served.url}/login")
    expect(page.get_by_role("heading", name="Log in or sign up")).to_be_visible()


def test_a_used_link_and_an_older_link_answer_410(page: Page, served: Served) -> None:
    address = new_address("links")
    older = ask_for_link(page, served, address)
    newer = ask_for_link(page, served, address)  # retires the older one at once
    answer = page.goto(older)
    assert answer is not None
    assert answer.status == 410
    expect(page.get_by_role("heading", name="This link was used or has expired")).to_be_visible()
    expect(page.get_by_role("button", name="Log in")).to_have_count(0)
    shoot(page, "login-link-expired")

    page.goto(newer)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{served.url}/dashboard")
    answer = page.goto(newer)  # used up
    assert answer is not None
    assert answer.status == 410
    expect(page.get_by_role("heading", name="This link was used or has expired")).to_be_visible()


def test_a_tampered_csrf_token_is_refused(logged_in_page: Page) -> None:
    page = logged_in_page
    page.goto("/dashboard/keys")
    form = page.locator("form", has=page.get_by_role("button", name="Create key"))
    form.locator("input[name=csrf_token]").evaluate("field => { field.value = '0'.repeat(64); }")
    page.get_by_label("Name").fill("tampered")
    with page.expect_response("**/dashboard/keys") as posted:
        page.get_by_role("button", name="Create key").click()
    assert posted.value.status == 403
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    shoot(page, "csrf-refused")
    page.goto("/dashboard/keys")
    expect(page.get_by_text("tampered")).to_have_count(0)  # no key was made


def test_the_plan_page_without_stripe(logged_in_page: Page) -> None:
    page = logged_in_page
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Plan").click()
    expect(page.get_by_role("heading", name="Your plan: free")).to_be_visible()
    table = page.get_by_role("table", name="What each plan allows")
    rows = [f"{tier} (yours)" if tier == Tier.FREE else tier.value for tier in TIERS]
    expect(table.get_by_role("rowheader")).to_have_text(rows)
    expect(page.get_by_role("button", name="Subscribe")).to_have_count(0)
    expect(page.get_by_role("button", name="Manage billing")).to_have_count(0)
    expect(page.get_by_text(BILLING_OFF)).to_be_visible()
    shoot(page, "plan")


def test_the_setup_page_before_a_key(logged_in_page: Page, served: Served) -> None:
    page = logged_in_page
    page.get_by_role("link", name="Set up a client").first.click()
    expect(page.get_by_role("heading", name="Set up a client", exact=True)).to_be_visible()
    expect(page.locator("#config-connector")).to_have_text(f"{served.url}/mcp")
    expect(page.locator("#config-claude-desktop")).to_contain_text(KEY_PLACEHOLDER)
    page.get_by_role("button", name="Copy the connector URL").click()
    assert page.evaluate("navigator.clipboard.readText()") == f"{served.url}/mcp"
    shoot(page, "setup")


def test_pages_reach_nothing_beyond_loopback(browser: Browser, served: Served) -> None:
    """What the fixtures' guard sees, and that the browser cannot reach out at all."""
    guard = Guard()
    context = new_context(browser, served)
    context.on("request", guard.watch)
    try:
        page = context.new_page()
        with pytest.raises(PlaywrightError, match="ERR_PROXY_CONNECTION_FAILED"):
            page.goto("http://example.com/")
        context.new_page().goto("/login")  # loopback still works
    finally:
        context.close()
    assert guard.outside == ["http://example.com/"]

"""Reports in a real browser: an account on the team plan (set as the operators' CLI sets
it) makes a protocol risk report and a wallet screen from the dashboard, shares one by link, a
visitor with no session opens the link, the owner stops sharing, and the link then answers "no
longer shared". An account on the free plan is told clearly why it gets no report. Each page
is checked with axe-core and kept as a screenshot (share tokens blanked out)."""

import pytest
from playwright.sync_api import Browser, Page, expect

from kamiyo.tiers import Tier
from tests.browser import a11y
from tests.browser.conftest import new_address, new_context
from tests.browser.harness import Served, change_account, log_in, replace_text, shoot

WALLET = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"  # the Ronin exploiter's address


@pytest.fixture(scope="module")
def served(strict_served: Served) -> Served:
    """The run's app without anonymous callers (one fewer app to start; these pages do not
    depend on them)."""
    return strict_served


def _no_violations(page: Page) -> None:
    found = a11y.violations(page)
    assert not found, "\n".join(f"{page.url}: {violation}" for violation in found)


def _status(page: Page, url: str) -> int:
    """The status of the page ``url`` answered, once the browser opened it."""
    answer = page.goto(url)
    assert answer is not None
    return answer.status


def _make(page: Page, field: str, value: str, button: str) -> None:
    page.goto("/dashboard/reports")
    page.get_by_label(field).fill(value)
    page.get_by_role("button", name=button).click()


def test_a_report_shared_opened_by_a_visitor_and_revoked(
    page: Page, browser: Browser, served: Served
) -> None:
    address = new_address("reports")
    log_in(page, served, address)
    change_account(served, address, tier=Tier.TEAM)  # as `kamiyo accounts set-tier` does

    _make(page, "Address (EVM, Solana, Bitcoin or Tron)", WALLET, "Screen the wallet")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Wallet screen: {WALLET}")
    _no_violations(page)
    shoot(page, "report-wallet-screen")

    _make(page, "Protocol name (e.g. Aave, Euler)", "Euler", "Assess the risk")
    expect(page.get_by_role("heading", level=1)).to_have_text("Protocol risk: Euler")
    expect(page.get_by_role("main")).to_contain_text("Private.")
    owner_url = page.url
    _no_violations(page)
    shoot(page, "report-risk")

    page.get_by_role("button", name="Share by link").click()
    link = page.locator("#share-link").inner_text().strip()
    assert link.startswith(f"{served.url}/r/"), link
    _no_violations(page)
    replace_text(page, link, f"{served.url}/r/EXAMPLE-share-token")
    shoot(page, "report-shared-owner")

    visitor = new_context(browser, served)  # no session: anyone the link was given to
    try:
        stranger = visitor.new_page()
        assert _status(stranger, link) == 200
        expect(stranger.get_by_role("heading", level=1)).to_have_text("Protocol risk: Euler")
        expect(stranger.get_by_role("main")).to_contain_text("A shared KAMIYO report, as of")
        expect(stranger.get_by_role("navigation")).to_have_count(0)  # none of the owner's pages
        assert address not in stranger.content()
        _no_violations(stranger)
        shoot(stranger, "report-shared-visitor")

        page.goto(owner_url)
        page.get_by_role("button", name="Stop sharing").click()
        expect(page.get_by_role("main")).to_contain_text("(its earlier link was revoked)")

        assert _status(stranger, link) == 410
        expect(stranger.get_by_role("heading", level=1)).to_have_text(
            "This report is no longer shared"
        )
        expect(stranger.get_by_role("main")).to_contain_text("Its owner has stopped sharing it.")
        expect(stranger.get_by_text("Euler")).to_have_count(0)
        _no_violations(stranger)
        shoot(stranger, "report-revoked-visitor")
    finally:
        visitor.close()

    page.goto("/dashboard/reports")
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="Euler")).to_contain_text("link revoked")
    expect(rows.filter(has_text=WALLET)).to_contain_text("private")
    _no_violations(page)
    shoot(page, "reports-list")


def test_the_free_plan_is_told_why_it_gets_no_report(logged_in_page: Page) -> None:
    page = logged_in_page
    _make(page, "Address (EVM, Solana, Bitcoin or Tron)", WALLET, "Screen the wallet")
    expect(page.get_by_role("alert")).to_contain_text("Refused:")
    expect(page.get_by_role("alert")).to_contain_text("team")
    expect(page.get_by_role("row").filter(has_text=WALLET)).to_have_count(0)
    _no_violations(page)
    shoot(page, "reports-refused")


def test_reports_by_keyboard(logged_in_page: Page) -> None:
    """Tab reaches every control of the reports page in order; Enter sends the form."""
    page = logged_in_page
    page.goto("/dashboard/reports")
    expected = a11y.controls(page)
    assert a11y.tab_order(page, len(expected)) == expected
    page.goto("/dashboard/reports")
    a11y.tab_order(page, expected.index("input: Protocol name (e.g. Aave, Euler)") + 1)
    page.keyboard.type("Aave")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Refused:")  # free plan: asked, refused

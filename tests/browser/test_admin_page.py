"""The operators' page in a real browser: an account made admin (as ``kamiyo accounts
set-role`` makes one) sees /admin with figures that match what is stored (accounts, answered
calls, the funnel), and reaches it from the dashboard's navigation and by keyboard; an ordinary
account is answered as for a page that does not exist (the page does not say it is there:
``admin_page.py``). axe-core checks both pages; both are kept as screenshots."""

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from kamiyo.access.usage import ANSWERED
from kamiyo.db.tables import Role
from tests.browser import a11y
from tests.browser.conftest import new_address
from tests.browser.harness import Served, call_tool, change_account, log_in, shoot


@pytest.fixture(scope="module")
def served(strict_served: Served) -> Served:
    """The run's app without anonymous callers (one fewer app to start; these pages do not
    depend on them)."""
    return strict_served


def _no_violations(page: Page) -> None:
    found = a11y.violations(page)
    assert not found, "\n".join(f"{page.url}: {violation}" for violation in found)


def _answered(served: Served) -> int:
    """The answered calls stored (as the page counts them)."""
    marks = ", ".join("?" * len(ANSWERED))
    query = f"SELECT count(*) FROM usage_records WHERE status IN ({marks})"
    return int(served.scalar(query, *ANSWERED))


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _number(page: Page, selector: str) -> int:
    return int(page.locator(selector).inner_text().strip())


def test_an_admin_sees_the_figures(page: Page, served: Served) -> None:
    address = new_address("operator")
    log_in(page, served, address)
    page.goto("/dashboard/keys")  # a key and a call, so the figures have something to count
    page.get_by_label("Name").fill("operator")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text().strip()
    before = _answered(served)
    call_tool(
        f"{served.url}/mcp", {"Authorization": f"Bearer {key}"}, "search_exploits", {"limit": 1}
    )
    _wait_until(lambda: _answered(served) > before)  # the meter writes in batches
    change_account(served, address, role=Role.ADMIN)  # as `kamiyo accounts set-role` does

    page.goto("/dashboard")
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Operators").click()
    expect(page).to_have_url(f"{served.url}/admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Operators")

    accounts = served.scalar("SELECT count(*) FROM accounts")
    by_tier = page.locator("[id^=accounts-]").all_inner_texts()
    assert sum(int(count) for count in by_tier) == accounts
    funnel = [int(count) for count in page.locator(".funnel-count").all_inner_texts()]
    assert funnel[0] == accounts  # sign-ups
    assert funnel[1] >= 1  # this account has a key
    assert funnel[2] >= 1  # and made a call
    answered = _answered(served)
    assert _number(page, "#calls") == answered
    expect(
        page.get_by_role("img", name="Daily active accounts over the last 30 days")
    ).to_be_visible()
    _no_violations(page)
    shoot(page, "admin")

    expected = a11y.controls(page)  # the numbers behind the chart open from the keyboard
    assert "summary: The numbers" in expected
    assert a11y.tab_order(page, len(expected)) == expected
    page.goto("/admin")
    a11y.tab_order(page, expected.index("summary: The numbers") + 1)
    page.keyboard.press("Enter")
    expect(page.locator("details")).to_have_attribute("open", "")


def test_an_ordinary_account_is_told_there_is_no_such_page(logged_in_page: Page) -> None:
    page = logged_in_page
    nav = page.get_by_role("navigation", name="Dashboard")
    expect(nav.get_by_role("link", name="Overview")).to_be_visible()
    expect(nav.get_by_role("link", name="Operators")).to_have_count(0)
    answer = page.goto("/admin")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("main")).to_contain_text("There is no page at this address.")
    expect(page.get_by_role("main")).not_to_contain_text("Operators")
    _no_violations(page)
    shoot(page, "admin-refused")

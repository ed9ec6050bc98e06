"""Accessibility of the dashboard's pages: axe-core finds no serious or critical violation
(labels, contrast, names, landmarks) on any page, and the log-in form and the keys page work
from the keyboard alone (Tab reaches every control in document order; Enter submits)."""

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser import a11y
from tests.browser.conftest import new_address
from tests.browser.harness import Served, accept_dialogs, ask_for_link, log_in

# The pages of the shared account without a configuration on them (those are checked below).
SIGNED_IN_PAGES = [
    "/dashboard",
    "/dashboard/keys",
    "/dashboard/plan",
    "/dashboard/usage",
    "/dashboard/alerts",
    "/dashboard/reports",
    "/dashboard/clients",
]


def _assert_accessible(page: Page, *visits: Callable[[], object]) -> None:
    """Each visit opens a page, which axe-core then checks; all are checked before failing."""
    found: list[str] = []
    for visit in visits:
        visit()
        found += [f"{page.url}: {violation}" for violation in a11y.violations(page)]
    assert not found, "\n".join(found)


def test_pages_before_log_in(page: Page, served: Served) -> None:
    address = new_address("a11y-public")
    links = [ask_for_link(page, served, address)]
    _assert_accessible(
        page,
        lambda: page.goto("/login"),
        lambda: links.append(ask_for_link(page, served, address)),  # "check your email"
        lambda: page.goto(links[0]),  # superseded by the second: 410
        lambda: page.goto(links[1]),  # the "Log in" button
        lambda: page.get_by_role("button", name="Log in").click(),  # the dashboard
    )


def test_signed_in_pages(logged_in_page: Page) -> None:
    page = logged_in_page
    _assert_accessible(
        page,
        *(lambda path=path: page.goto(path) for path in SIGNED_IN_PAGES),
    )


def test_the_pages_with_client_configurations(logged_in_page: Page) -> None:
    page = logged_in_page

    def new_key() -> None:
        page.goto("/dashboard/keys")
        page.get_by_label("Name").fill("new")
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()

    _assert_accessible(page, lambda: page.goto("/dashboard/setup"), new_key)


def test_log_in_by_keyboard(page: Page, served: Served) -> None:
    page.goto("/login")
    expected = a11y.controls(page)
    assert "input: Email address" in expected
    assert a11y.tab_order(page, len(expected)) == expected
    page.goto("/login")
    reached = a11y.tab_order(page, expected.index("input: Email address") + 1)
    assert reached[-1] == "input: Email address"
    page.keyboard.type(new_address("a11y-keyboard"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()


def test_keys_by_keyboard(page: Page, served: Served) -> None:
    """Create a key and revoke it with the keyboard, checking each page it passes with axe."""
    log_in(page, served, new_address("a11y-keys"))
    page.goto("/dashboard/keys")
    expected = a11y.controls(page)
    name_field = next(c for c in expected if c.startswith("input: Name"))
    assert a11y.tab_order(page, len(expected)) == expected
    page.goto("/dashboard/keys")
    a11y.tab_order(page, expected.index(name_field) + 1)
    page.keyboard.type("keyboard")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your new API key")).to_be_visible()

    _assert_accessible(page, lambda: page.goto("/dashboard/keys"))  # a key's row and Revoke
    expected = a11y.controls(page)
    revoke = "button: Revoke the key keyboard"
    assert a11y.tab_order(page, len(expected)) == expected
    page.goto("/dashboard/keys")
    dialogs = accept_dialogs(page)
    a11y.tab_order(page, expected.index(revoke) + 1)
    page.keyboard.press("Enter")
    expect(page.get_by_role("row").filter(has_text="keyboard")).to_contain_text("revoked")
    assert len(dialogs) == 1
    _assert_accessible(page, lambda: None)  # a revoked key's row


def test_the_checks_see_a_broken_page(page: Page) -> None:
    """axe-core runs and its findings fail a page: a field without a label, grey on grey."""
    page.set_content(
        '<html lang="en"><title>Broken</title><main><h1>Broken</h1><input type="text">'
        '<p style="color:#aaa;background:#bbb">faint</p></main>'
    )
    assert {violation.rule for violation in a11y.violations(page)} == {"label", "color-contrast"}

"""The dashboard's other pages in a real browser: log-out, a used or expired log-in link, a
form whose CSRF token was tampered with, the plan page of a server without Stripe."""

from playwright.sync_api import Page, expect

from kamiyo.tiers import TIERS, Tier
from kamiyo.web.dashboard.plan_page import BILLING_OFF
from tests.browser.conftest import new_address
from tests.browser.harness import Served, ask_for_link, log_in, shoot


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

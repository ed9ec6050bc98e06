"""The plan page: the tier table, Checkout and the billing portal through the fake Stripe, and
a clear message on a server without billing."""

import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import update

from kamiyo.access import accounts
from kamiyo.db.tables import Subscription
from kamiyo.observability import configure_logging
from kamiyo.tiers import TIERS, Tier
from tests.billing.conftest import PRICES
from tests.billing.smtp import running_mailbox
from tests.billing.stripe_fake import running_fake_stripe
from tests.web.dashboard.conftest import Site, open_site

pytestmark = pytest.mark.anyio


async def subscribe(site: Site, email: str, tier: Tier, **stripe: object) -> None:
    async with site.sessions() as session:
        account = await accounts.create_account(session, email, tier)
        await session.commit()
        await session.execute(
            update(Subscription).where(Subscription.account_pk == account.pk).values(**stripe)
        )
        await session.commit()


async def test_the_plan_page_shows_the_tier_table_and_starts_a_checkout(site: Site) -> None:
    csrf = await site.log_in("plan@example.com")
    page = await site.http.get("/dashboard/plan")
    assert page.status_code == 200
    assert "Your plan: free" in page.text
    for tier, policy in TIERS.items():
        assert f'<th scope="row">{tier.value}' in page.text
        assert f"{policy.requests_per_day:,}" in page.text
    assert "assess_protocol_risk" in page.text  # what personal adds (from the catalogue)
    assert "https://checkout.stripe.com" in page.headers["content-security-policy"]
    # A button for each tier that has a price here, none for the others.
    assert page.text.count('name="tier" value=') == len(PRICES)

    answer = await site.http.post(
        "/dashboard/plan/checkout", data={"tier": "personal", "csrf_token": csrf}
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("https://checkout.stripe.com/")
    [sent] = site.stripe.posts("/v1/checkout/sessions")
    assert sent.form["customer_email"] == "plan@example.com"
    unsold = await site.http.post(
        "/dashboard/plan/checkout", data={"tier": "team", "csrf_token": csrf}
    )
    assert unsold.status_code == 400
    assert "not sold on this server" in unsold.text
    no_portal = await site.http.post("/dashboard/plan/portal", data={"csrf_token": csrf})
    assert no_portal.status_code == 409


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Logging as `kamiyo serve` sets it up with KAMIYO_LOG_LEVEL=DEBUG, into ``caplog``."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    named = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    configure_logging("DEBUG")
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in named.items():
            logging.getLogger(name).setLevel(was)


async def test_a_subscriber_manages_billing_in_the_portal_and_its_url_is_not_logged(
    site: Site, debug_logs: pytest.LogCaptureFixture
) -> None:
    renews = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    await subscribe(
        site,
        "paid@example.com",
        Tier.PERSONAL,
        stripe_customer_id="cus_paid1",
        stripe_subscription_id="sub_paid1",
        current_period_end=renews,
    )
    csrf = await site.log_in("paid@example.com")
    page = await site.http.get("/dashboard/plan")
    assert "Your plan: personal" in page.text
    assert "Renews on" in page.text
    assert "2027-01-15" in page.text
    assert "Manage billing" in page.text
    assert 'name="tier"' not in page.text  # a second checkout would double the subscription
    twice = await site.http.post(
        "/dashboard/plan/checkout", data={"tier": "enterprise", "csrf_token": csrf}
    )
    assert twice.status_code == 409

    answer = await site.http.post("/dashboard/plan/portal", data={"csrf_token": csrf})
    assert answer.status_code == 303
    url = answer.headers["location"]
    assert url.startswith("https://billing.stripe.com/p/session/")
    assert "Request to Stripe api" in debug_logs.text  # the Stripe library's lines are seen
    assert url.rpartition("/")[2] not in debug_logs.text


@pytest.fixture
async def site_without_billing(sqlite_url: str) -> AsyncIterator[Site]:
    with running_fake_stripe() as stripe, running_mailbox() as mailbox:
        async for opened in open_site(
            sqlite_url, stripe, mailbox, changes={"stripe": {"secret_key": None}}
        ):
            yield opened


async def test_without_stripe_the_page_says_billing_is_not_set_up(
    site_without_billing: Site,
) -> None:
    site = site_without_billing
    csrf = await site.log_in("nobilling@example.com")
    page = await site.http.get("/dashboard/plan")
    assert page.status_code == 200
    assert "Billing is not set up on this server" in page.text
    assert "Subscribe</button>" not in page.text
    answer = await site.http.post(
        "/dashboard/plan/checkout", data={"tier": "personal", "csrf_token": csrf}
    )
    assert answer.status_code == 503
    assert "Billing is not set up on this server" in answer.text
    assert site.stripe.requests == []

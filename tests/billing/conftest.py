"""Fixtures for sign-up, key links, checkout and mail: a fake Stripe and a real SMTP server."""

from collections.abc import Iterator
from typing import Any

import pytest

from kamiyo.config import DatabaseSettings, Settings, SiteSettings, SmtpSettings, StripeSettings
from tests.billing.smtp import Mailbox, running_mailbox
from tests.billing.stripe_fake import FakeStripe, running_fake_stripe

PUBLIC_URL = "https://kamiyo.example"
PRICES = {"personal": "price_personal_test_1", "enterprise": "price_enterprise_test_1"}


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with running_fake_stripe() as fake:
        yield fake


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with running_mailbox() as box:
        yield box


def billing_settings(
    database_url: str, fake: FakeStripe, mailbox: Mailbox, **sections: dict[str, Any]
) -> Settings:
    """Settings that bill through ``fake`` and mail to ``mailbox``, ``sections`` changed."""
    stripe = StripeSettings(
        secret_key=fake.secret_key,
        api_base=fake.url,
        prices=PRICES,
        checkout_success_url=f"{PUBLIC_URL}/dashboard?paid=1",
        checkout_cancel_url=f"{PUBLIC_URL}/pricing",
        portal_return_url=f"{PUBLIC_URL}/dashboard",
        _env_file=None,
    )
    settings = Settings(
        environment="test",
        database=DatabaseSettings(url=database_url),
        site=SiteSettings(public_url=PUBLIC_URL),
        stripe=stripe,
        smtp=SmtpSettings(**mailbox.settings()),
        _env_file=None,
    )
    return settings.with_changes(**sections)

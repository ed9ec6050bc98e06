"""``kamiyo billing sync`` on real databases (SQLite and PostgreSQL) against the fake Stripe.

The fake lists what a test puts in ``fake_stripe.subscriptions``: subscription objects taken
from the recorded webhook events (``subscription_event``), as Stripe's list returns them.
"""

import asyncio
import datetime as dt
import json
import logging
import time
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from typer.testing import CliRunner

from kamiyo.access import accounts
from kamiyo.access.accounts import current_tier
from kamiyo.billing.stripe_api import BillingError
from kamiyo.billing.sync import (
    CLOCK_MARGIN,
    PAGE_SIZE,
    STATE_FIELDS,
    SyncReport,
)
from kamiyo.billing.sync import (
    sync_subscriptions as sync,
)
from kamiyo.cli import app
from kamiyo.config import Settings, get_settings
from kamiyo.db.tables import Account, Subscription
from kamiyo.runtime import open_runtime
from kamiyo.tiers import Tier
from tests.billing.conftest import PUBLIC_URL, billing_settings
from tests.billing.smtp import Mailbox
from tests.billing.stripe_fake import FakeStripe
from tests.billing.test_webhooks import (
    PRICES,
    SECRET,
    Sessions,
    deliver,
    new_account,
    row_of,
    subscription_event,
    subscription_of,
)

pytestmark = pytest.mark.anyio

DAY = 86_400
LIST = "/v1/subscriptions"


@pytest.fixture
def sessions(migrated_sessions: Sessions) -> Sessions:
    return migrated_sessions


@pytest.fixture
def settings(migrated_database_url: str, fake_stripe: FakeStripe, mailbox: Mailbox) -> Settings:
    return billing_settings(
        migrated_database_url,
        fake_stripe,
        mailbox,
        stripe={"prices": PRICES, "webhook_secret": SecretStr(SECRET), "past_due_grace_days": 7},
    )


def now() -> int:
    return int(time.time())


def stripe_holds(kind: str, account_pk: int | None, **fields: Any) -> dict[str, Any]:
    """A subscription as Stripe lists it: the object of a ``customer.subscription.<kind>``."""
    obj: dict[str, Any] = subscription_event(kind, account_pk, **fields)["data"]["object"]
    return obj


def counts(report: SyncReport) -> tuple[int, int, int, int, int]:
    return (
        report.seen,
        report.changed,
        report.unchanged,
        report.ignored,
        report.first_activations,
    )


def state(row: Subscription) -> tuple[object, ...]:
    return tuple(getattr(row, name) for name in STATE_FIELDS)


async def tier_of(sessions: Sessions, account_pk: int) -> Tier:
    async with sessions() as session:
        account = await session.get(Account, account_pk)
        assert account is not None
        return await current_tier(session, account)


async def test_a_missed_created_webhook_is_recovered_once(
    sessions: Sessions, settings: Settings, fake_stripe: FakeStripe, mailbox: Mailbox
) -> None:
    pk = await new_account(sessions, "missed@example.com")
    fake_stripe.subscriptions = [stripe_holds("created", pk, created=now() - 3600)]

    report = await sync(sessions, settings)

    assert counts(report) == (1, 1, 0, 0, 1)
    row = await row_of(sessions, pk)
    assert (row.tier, row.status) == ("personal", "active")
    assert (row.stripe_subscription_id, row.stripe_customer_id) == ("sub_test_1", "cus_test_1")
    assert await tier_of(sessions, pk) is Tier.PERSONAL
    [welcome] = mailbox.wait_for(1)
    assert welcome.recipients == ["missed@example.com"]
    assert welcome.message["Subject"] == "Welcome to KAMIYO"
    assert welcome.reveal_links()[0].startswith(f"{PUBLIC_URL}/keys/reveal/")
    [listed] = fake_stripe.gets(LIST)
    assert listed.form == {"status": "all", "limit": str(PAGE_SIZE)}

    # Again: nothing changes, nobody is welcomed twice.
    before = state(row)
    again = await sync(sessions, settings)
    assert counts(again) == (1, 0, 1, 0, 0)
    assert state(await row_of(sessions, pk)) == before
    assert len(mailbox.received) == 1


async def test_a_missed_cancellation_is_recovered(
    sessions: Sessions, settings: Settings, fake_stripe: FakeStripe, mailbox: Mailbox
) -> None:
    pk = await new_account(sessions)
    start = now() - 10 * DAY
    created = await deliver(sessions, subscription_event("created", pk, created=start), settings)
    assert created.activated == (pk,)
    assert await tier_of(sessions, pk) is Tier.PERSONAL
    # The customer.subscription.deleted delivery never arrived; Stripe lists it canceled.
    fake_stripe.subscriptions = [stripe_holds("deleted", pk, created=now() - 600)]

    report = await sync(sessions, settings)

    assert counts(report) == (1, 1, 0, 0, 0)
    row = await row_of(sessions, pk)
    assert (row.tier, row.status) == ("personal", "canceled")
    assert await tier_of(sessions, pk) is Tier.FREE
    assert mailbox.received == []  # the welcome went with the webhook, not here
    assert counts(await sync(sessions, settings)) == (1, 0, 1, 0, 0)


async def test_every_page_is_read_and_strangers_are_left_alone(
    sessions: Sessions, settings: Settings, fake_stripe: FakeStripe, mailbox: Mailbox
) -> None:
    ours = {0: "first", 57: "middle", 99: "last-of-one", 100: "first-of-two", 149: "last"}
    pks = {i: await new_account(sessions, f"{name}@example.com") for i, name in ours.items()}
    start = now() - DAY
    fake_stripe.subscriptions = [
        stripe_holds(
            "created",
            pks.get(i, 999_999 if i == 3 else None),  # 3 names an account that does not exist
            created=start - i,  # Stripe lists the newest first
            sub=f"sub_page_{i:03}",
            customer=f"cus_page_{i:03}",
            tier="team" if i % 2 else "personal",
        )
        for i in range(150)
    ]
    seen: list[int] = []

    report = await sync(sessions, settings, on_progress=lambda r: seen.append(r.seen))

    assert counts(report) == (150, 5, 0, 145, 5)
    assert report.pages == 2
    assert seen == list(range(1, 151))
    first, second = fake_stripe.gets(LIST)
    assert first.form == {"status": "all", "limit": "100"}
    assert second.form == {"status": "all", "limit": "100", "starting_after": "sub_page_099"}
    assert "starting_after=sub_page_099" in second.query
    for i, pk in pks.items():
        row = await row_of(sessions, pk)
        expected = ("team" if i % 2 else "personal", "active", f"sub_page_{i:03}")
        assert (row.tier, row.status, row.stripe_subscription_id) == expected
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Subscription)) == 5
        assert await session.scalar(select(func.count()).select_from(Account)) == 5
    assert len(mailbox.wait_for(5)) == 5

    again = await sync(sessions, settings)
    assert counts(again) == (150, 0, 5, 145, 0)
    assert len(mailbox.received) == 5


async def test_a_listed_subscription_out_of_range_is_skipped_with_one_warning(
    sessions: Sessions,
    settings: Settings,
    fake_stripe: FakeStripe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The webhooks' reading of objects (stripe_objects.read) guards the sync too."""
    good, bad = await new_account(sessions, "good@example.com"), await new_account(sessions)
    broken = stripe_holds("created", bad, created=now() - 60, sub="sub_bad", customer="cus_bad")
    broken["items"]["data"][0]["current_period_end"] = 10**20
    fake_stripe.subscriptions = [stripe_holds("created", good, created=now() - 60), broken]

    with caplog.at_level(logging.WARNING, logger="kamiyo"):
        report = await sync(sessions, settings)

    assert (counts(report), report.unusable) == ((2, 1, 0, 0, 1), 1)
    assert "1 unusable (see the log)" in report.summary()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("kamiyo")] == [
        "stripe sync: a listed subscription was ignored: unusable subscription: "
        "items.data.0.current_period_end: Input should be less than or equal to 32503680000"
    ]
    assert (await row_of(sessions, good)).status == "active"
    assert await subscription_of(sessions, bad) is None


async def test_a_webhook_applied_before_the_sync_keeps_its_newer_state(
    sessions: Sessions, settings: Settings, fake_stripe: FakeStripe
) -> None:
    pk = await new_account(sessions)
    await deliver(sessions, subscription_event("created", pk, created=now() - DAY), settings)
    # Canceled this very second; the list was read a moment before and still shows it active.
    fake_stripe.subscriptions = [stripe_holds("updated", pk, created=now() - DAY)]
    canceled = await deliver(sessions, subscription_event("deleted", pk, created=now()), settings)
    assert canceled.message == "personal canceled"

    report = await sync(sessions, settings)

    assert counts(report) == (1, 0, 1, 0, 0)
    assert (await row_of(sessions, pk)).status == "canceled"


async def test_a_webhook_after_the_fetch_applies_over_the_synced_state(
    sessions: Sessions, settings: Settings, fake_stripe: FakeStripe
) -> None:
    pk = await new_account(sessions)
    fake_stripe.subscriptions = [stripe_holds("created", pk, created=now() - DAY)]
    before = dt.datetime.now(dt.UTC)
    report = await sync(sessions, settings)
    after = dt.datetime.now(dt.UTC)
    assert counts(report) == (1, 1, 0, 0, 1)
    row = await row_of(sessions, pk)
    # Dated by when the request was sent, in whole seconds, less the clock margin.
    assert row.stripe_state_at is not None
    assert before - CLOCK_MARGIN - dt.timedelta(seconds=1) < row.stripe_state_at
    assert row.stripe_state_at <= after - CLOCK_MARGIN
    assert row.stripe_state_at.microsecond == 0

    # An event Stripe made in the second the list was read (the fetch may predate it) wins.
    event = subscription_event("deleted", pk, created=int(before.timestamp()))
    result = await deliver(sessions, event, settings)
    assert result.message == "personal canceled"
    assert (await row_of(sessions, pk)).status == "canceled"


async def test_stripe_failing_is_a_billing_error_and_a_rerun_finishes(
    sessions: Sessions, settings: Settings, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_next(500)
    with pytest.raises(BillingError) as failed:
        await sync(sessions, settings)
    assert fake_stripe.secret_key not in str(failed.value)

    pks = [await new_account(sessions, f"p{i}@example.com") for i in range(2)]
    fake_stripe.subscriptions = (
        [stripe_holds("created", pks[0], created=now() - 60, sub="sub_a", customer="cus_a")]
        + [
            stripe_holds("created", None, created=now() - 60, sub=f"sub_x{i}", customer=f"cus_x{i}")
            for i in range(PAGE_SIZE - 1)
        ]
        + [stripe_holds("created", pks[1], created=now() - 120, sub="sub_b", customer="cus_b")]
    )

    def fail_second_page(report: SyncReport) -> None:
        if report.seen == PAGE_SIZE:
            fake_stripe.fail_next(500)

    with pytest.raises(BillingError):
        await sync(sessions, settings, on_progress=fail_second_page)
    assert (await row_of(sessions, pks[0])).status == "active"  # page one stays applied
    assert await subscription_of(sessions, pks[1]) is None

    report = await sync(sessions, settings)
    assert counts(report) == (PAGE_SIZE + 1, 1, 1, PAGE_SIZE - 1, 1)
    assert (await row_of(sessions, pks[1])).status == "active"


async def test_without_a_stripe_key_there_is_nothing_to_sync(
    sessions: Sessions, settings: Settings, fake_stripe: FakeStripe
) -> None:
    unset = settings.with_changes(stripe={"secret_key": None})
    with pytest.raises(BillingError, match="not set up"):
        await sync(sessions, unset)
    assert fake_stripe.requests == []


# The command line -----------------------------------------------------------------------------

runner = CliRunner()


def test_billing_sync_command(
    migrated_database_url: str,
    fake_stripe: FakeStripe,
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = mailbox.env() | {
        "KAMIYO_DATABASE_URL": migrated_database_url,
        "KAMIYO_PUBLIC_URL": PUBLIC_URL,
        "KAMIYO_STRIPE_API_BASE": fake_stripe.url,
        "KAMIYO_STRIPE_PRICES": json.dumps(PRICES),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = runner.invoke(app, ["billing", "sync"])
    assert result.exit_code == 2
    assert "KAMIYO_STRIPE_SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.output
    assert fake_stripe.requests == []

    monkeypatch.setenv("KAMIYO_STRIPE_SECRET_KEY", fake_stripe.secret_key)
    get_settings.cache_clear()  # the command read the environment without the key
    created = runner.invoke(app, ["accounts", "create", "cli@example.com"])
    assert created.exit_code == 0, created.stderr

    async def account_pk() -> int:
        async with open_runtime(Settings()) as runtime, runtime.sessions() as session:
            account = await accounts.find_account(session, "cli@example.com")
            assert account is not None
            return account.pk

    pk = asyncio.run(account_pk())
    fake_stripe.subscriptions = [
        stripe_holds("created", pk, created=now() - 60),
        stripe_holds("created", None, created=now() - 90, sub="sub_other", customer="cus_other"),
    ]

    result = runner.invoke(app, ["billing", "sync"])
    assert result.exit_code == 0, result.stderr
    assert (
        "Synced 2 Stripe subscription(s): 1 changed, 0 unchanged, 1 ignored (no account here), "
        "1 first activation(s)." in result.stderr
    )
    assert mailbox.wait_for(1)[0].recipients == ["cli@example.com"]

    result = runner.invoke(app, ["billing", "sync"])
    assert result.exit_code == 0, result.stderr
    assert "0 changed, 1 unchanged, 1 ignored" in result.stderr
    assert len(mailbox.received) == 1

    fake_stripe.fail_next(500)
    result = runner.invoke(app, ["billing", "sync"])
    assert result.exit_code == 1
    *logged, last = result.stderr.strip().splitlines()
    assert last.startswith("error: Stripe sync stopped after 0 subscription(s): the payment")
    assert not any("error:" in line for line in logged)
    for output in (result.stderr, result.stdout):
        assert fake_stripe.secret_key not in output
        assert "Traceback" not in output

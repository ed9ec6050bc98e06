"""Stripe webhooks end to end on real databases (SQLite and PostgreSQL).

Bodies are the recorded events in tests/fixtures/stripe/events with ids, times, prices and
metadata changed per scenario (their structure kept), signed as Stripe signs them by the
``stripe`` library's own code. They go through ``handle_event`` and, at the end, through the
Starlette route.
"""

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import stripe
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from kamiyo.access.accounts import create_account, current_tier, entitled_tier
from kamiyo.billing.subscriptions import apply_subscription
from kamiyo.billing.webhooks import TOLERANCE_S, WebhookResult, handle_event
from kamiyo.config import Settings, StripeSettings
from kamiyo.db.tables import Account, StripeEvent, Subscription
from kamiyo.tiers import Tier
from kamiyo.web.webhooks import MAX_BODY_BYTES, PATH, stripe_webhook_route

pytestmark = pytest.mark.anyio

EVENTS = Path(__file__).parent.parent / "fixtures" / "stripe" / "events"
SECRET = "whsec_test_kamiyo_billing_webhooks_0123456789"
PRICES = {
    "personal": "price_test_personal",
    "team": "price_test_team",
    "enterprise": "price_test_enterprise",
}
T0 = 1_760_000_000  # scenario times are offsets from here (Stripe's `created`, seconds)
DAY = 86_400
GRACE = dt.timedelta(days=7)
SUB = "sub_test_1"
CUS = "cus_test_1"

Sessions = async_sessionmaker[AsyncSession]


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Settings for webhook tests; ``sections`` change some fields, e.g. ``stripe={…}``."""
    stripe = StripeSettings(
        webhook_secret=SECRET, prices=PRICES, past_due_grace_days=7, _env_file=None
    )
    return Settings(environment="test", stripe=stripe, _env_file=None).with_changes(**sections)


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


# Building and signing events ------------------------------------------------------------------


@cache
def _fixture_text(name: str) -> str:
    return (EVENTS / f"{name}.json").read_text()


def fixture_event(name: str, *, created: int, event_id: str | None = None) -> dict[str, Any]:
    """A recorded event with a fresh id (or ``event_id``) and Stripe time ``created``."""
    event: dict[str, Any] = json.loads(_fixture_text(name))
    event["id"] = event_id or f"evt_test_{uuid.uuid4().hex[:24]}"
    event["created"] = created
    return event


def subscription_event(
    kind: str,
    account_pk: int | None,
    *,
    created: int,
    sub: str = SUB,
    customer: str = CUS,
    tier: str = "personal",
    price: str | None = None,
    status: str | None = None,
    cancel_at_period_end: bool = False,
    period_end: int | None = None,
) -> dict[str, Any]:
    """``customer.subscription.<kind>`` for ``sub``; metadata names ``account_pk`` if given."""
    event = fixture_event(f"customer.subscription.{kind}", created=created)
    obj = event["data"]["object"]
    status = status or ("canceled" if kind == "deleted" else "active")
    end = period_end if period_end is not None else created + 30 * DAY
    ending = cancel_at_period_end or status == "canceled"
    obj.update(
        id=sub,
        customer=customer,
        status=status,
        cancel_at_period_end=cancel_at_period_end,
        cancel_at=end if cancel_at_period_end else None,
        canceled_at=created if ending else None,
        ended_at=created if status == "canceled" else None,
        metadata={} if account_pk is None else {"account_pk": str(account_pk), "tier": tier},
    )
    item = obj["items"]["data"][0]
    item.update(subscription=sub, current_period_start=end - 30 * DAY, current_period_end=end)
    item["price"]["id"] = price or PRICES[tier]
    obj["items"]["url"] = f"/v1/subscription_items?subscription={sub}"
    return event


def checkout_event(
    account_pk: int | None,
    *,
    created: int,
    sub: str = SUB,
    customer: str = CUS,
    tier: str = "personal",
    mode: str = "subscription",
) -> dict[str, Any]:
    """``checkout.session.completed`` as our checkout sessions carry it."""
    event = fixture_event("checkout.session.completed", created=created)
    reference = None if account_pk is None else str(account_pk)
    event["data"]["object"].update(
        client_reference_id=reference,
        metadata={} if reference is None else {"account_pk": reference, "tier": tier},
        customer=customer,
        subscription=sub if mode == "subscription" else None,
        mode=mode,
    )
    return event


def invoice_event(
    kind: str, *, created: int, sub: str = SUB, customer: str = CUS
) -> dict[str, Any]:
    """``invoice.paid`` or ``invoice.payment_failed`` of ``sub``."""
    event = fixture_event(f"invoice.{kind}", created=created)
    obj = event["data"]["object"]
    obj.update(id=f"in_test_{uuid.uuid4().hex[:16]}", customer=customer)
    obj["parent"]["subscription_details"]["subscription"] = sub
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()


def sign(payload: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe sends: ``t=<unix time>,v1=<HMAC-SHA256 hex>``."""
    header: str = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), secret, timestamp
    )
    return header


async def deliver(
    sessions: Sessions, event: dict[str, Any], settings: Settings | None = None
) -> WebhookResult:
    payload = encode(event)
    return await handle_event(sessions, settings or make_settings(), payload, sign(payload))


# Reading the database -------------------------------------------------------------------------


@pytest.fixture
def sessions(migrated_sessions: Sessions) -> Sessions:
    return migrated_sessions


async def new_account(sessions: Sessions, email: str = "buyer@example.com") -> int:
    async with sessions() as session:
        account = await create_account(session, email)
        await session.commit()
        return account.pk


async def subscription_of(sessions: Sessions, account_pk: int) -> Subscription | None:
    async with sessions() as session:
        return await session.get(Subscription, account_pk)


async def row_of(sessions: Sessions, account_pk: int) -> Subscription:
    row = await subscription_of(sessions, account_pk)
    assert row is not None
    return row


async def events_recorded(sessions: Sessions) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(select(StripeEvent.id, StripeEvent.outcome))
        return dict(rows.all())


async def subscribe(
    sessions: Sessions, account_pk: int, *, created: int = T0, tier: str = "personal"
) -> list[WebhookResult]:
    """What a checkout makes Stripe send: the subscription, then the completed checkout."""
    return [
        await deliver(
            sessions, subscription_event("created", account_pk, created=created, tier=tier)
        ),
        await deliver(sessions, checkout_event(account_pk, created=created + 1, tier=tier)),
        await deliver(sessions, invoice_event("paid", created=created + 1)),
    ]


# Scenarios ------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkout_first", [True, False])
async def test_subscribing_grants_the_tier_and_reports_one_first_activation(
    sessions: Sessions, checkout_first: bool
) -> None:
    pk = await new_account(sessions)
    created = subscription_event("created", pk, created=T0)
    completed = checkout_event(pk, created=T0 + 1)
    paid = invoice_event("paid", created=T0 + 1)
    order = [completed, created, paid] if checkout_first else [created, completed, paid]
    results = [await deliver(sessions, event) for event in order]

    assert all(result.status == 200 and not result.duplicate for result in results)
    assert [pk for result in results for pk in result.activated] == [pk]
    assert next(r for r in results if r.activated).event_type == "customer.subscription.created"
    row = await row_of(sessions, pk)
    assert (row.tier, row.status) == ("personal", "active")
    assert (row.stripe_customer_id, row.stripe_subscription_id) == (CUS, SUB)
    assert row.stripe_price_id == PRICES["personal"]
    assert row.current_period_end == at(T0 + 30 * DAY)  # from the subscription item
    assert row.stripe_state_at == at(T0)
    assert not row.cancel_at_period_end
    assert row.past_due_since is None
    async with sessions() as session:
        account = await session.get(Account, pk)
        assert account is not None
        assert await current_tier(session, account) is Tier.PERSONAL
    assert len(await events_recorded(sessions)) == 3


async def test_checkout_alone_links_the_account_but_grants_nothing(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    result = await deliver(sessions, checkout_event(pk, created=T0))
    assert result.status == 200
    assert not result.activated
    row = await row_of(sessions, pk)
    assert (row.tier, row.status, row.stripe_subscription_id) == ("free", "incomplete", SUB)
    assert entitled_tier(row, at(T0), GRACE) is Tier.FREE


async def test_upgrade_and_downgrade_follow_the_price(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    for offset, tier in ((100, "team"), (200, "enterprise"), (300, "personal")):
        event = subscription_event("updated", pk, created=T0 + offset, tier=tier)
        result = await deliver(sessions, event)
        assert (result.status, result.message, result.activated) == (200, f"{tier} active", ())
        row = await row_of(sessions, pk)
        assert (row.tier, row.status, row.stripe_price_id) == (tier, "active", PRICES[tier])


async def test_failed_payment_keeps_the_tier_through_grace_then_recovers(
    sessions: Sessions,
) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    failed_at = T0 + 30 * DAY + 60
    result = await deliver(sessions, invoice_event("payment_failed", created=failed_at))
    assert result.message == "personal past_due"
    row = await row_of(sessions, pk)
    assert (row.status, row.past_due_since) == ("past_due", at(failed_at))
    assert entitled_tier(row, at(failed_at + DAY), GRACE) is Tier.PERSONAL
    assert entitled_tier(row, at(failed_at + 7 * DAY - 1), GRACE) is Tier.PERSONAL
    assert entitled_tier(row, at(failed_at + 7 * DAY), GRACE) is Tier.FREE
    assert entitled_tier(row, at(failed_at + 8 * DAY), GRACE) is Tier.FREE

    # Stripe's own status change and a retry that fails again keep the grace's start.
    await deliver(sessions, subscription_event("updated", pk, created=failed_at, status="past_due"))
    await deliver(sessions, invoice_event("payment_failed", created=failed_at + 3 * DAY))
    row = await row_of(sessions, pk)
    assert (row.status, row.past_due_since) == ("past_due", at(failed_at))

    result = await deliver(sessions, invoice_event("paid", created=failed_at + 4 * DAY))
    assert (result.message, result.activated) == ("personal active", ())
    row = await row_of(sessions, pk)
    assert (row.status, row.past_due_since) == ("active", None)
    assert entitled_tier(row, at(failed_at + 30 * DAY), GRACE) is Tier.PERSONAL


async def test_cancel_at_period_end_keeps_access_until_deleted(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    end = T0 + 30 * DAY
    update = subscription_event(
        "updated", pk, created=T0 + DAY, cancel_at_period_end=True, period_end=end
    )
    result = await deliver(sessions, update)
    assert result.message == "personal active (cancels at period end)"
    row = await row_of(sessions, pk)
    assert row.cancel_at_period_end
    assert entitled_tier(row, at(T0 + 2 * DAY), GRACE) is Tier.PERSONAL

    deleted = subscription_event("deleted", pk, created=end + 1, period_end=end)
    assert (await deliver(sessions, deleted)).message == "personal canceled"
    row = await row_of(sessions, pk)
    assert row.status == "canceled"
    assert entitled_tier(row, at(end + 2), GRACE) is Tier.FREE


async def test_resubscribing_after_cancel_pays_again_with_a_new_subscription(
    sessions: Sessions,
) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    await deliver(sessions, subscription_event("deleted", pk, created=T0 + DAY))

    new_sub = "sub_test_2"
    created = subscription_event("created", pk, created=T0 + 2 * DAY, sub=new_sub, tier="team")
    result = await deliver(sessions, created)
    assert (result.message, result.activated) == ("team active", (pk,))  # welcome back
    row = await row_of(sessions, pk)
    assert (row.tier, row.status, row.stripe_subscription_id) == ("team", "active", new_sub)
    assert row.stripe_customer_id == CUS

    # Later news of the ended subscription changes nothing.
    late = subscription_event("deleted", pk, created=T0 + 3 * DAY)
    result = await deliver(sessions, late)
    assert result.message == f"ignored: {SUB} is canceled; the account holds {new_sub}"
    assert (await row_of(sessions, pk)).status == "active"


async def test_deleted_before_an_older_update_stays_canceled(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    await deliver(sessions, subscription_event("deleted", pk, created=T0 + 20))
    result = await deliver(
        sessions, subscription_event("updated", pk, created=T0 + 10, tier="team")
    )
    assert result.status == 200
    assert result.message.startswith(f"ignored: {SUB} out of order")
    row = await row_of(sessions, pk)
    assert (row.tier, row.status, row.stripe_state_at) == ("personal", "canceled", at(T0 + 20))


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        ("canceled", "active", "canceled"),  # a same-second straggler never undoes a cancel
        ("past_due", "active", "past_due"),
        ("active", "incomplete", "active"),
        ("active", "past_due", "past_due"),  # later in a subscription's life: applies
        ("incomplete", "active", "active"),
    ],
)
async def test_same_second_events_prefer_the_later_stage(
    sessions: Sessions, first: str, second: str, kept: str
) -> None:
    pk = await new_account(sessions)
    await deliver(sessions, subscription_event("created", pk, created=T0 - 10))
    for status in (first, second):
        kind = "deleted" if status == "canceled" else "updated"
        await deliver(sessions, subscription_event(kind, pk, created=T0, status=status))
    assert (await row_of(sessions, pk)).status == kept


async def test_same_second_events_of_one_stage_apply_in_arrival_order(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    for tier in ("team", "enterprise"):
        await deliver(sessions, subscription_event("updated", pk, created=T0 + 50, tier=tier))
    assert (await row_of(sessions, pk)).tier == "enterprise"


async def test_an_older_payment_failure_is_ignored(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    await deliver(sessions, subscription_event("updated", pk, created=T0 + 100, tier="team"))
    result = await deliver(sessions, invoice_event("payment_failed", created=T0 + 50))
    assert result.message.startswith(f"ignored: {SUB} out of order")
    assert (await row_of(sessions, pk)).status == "active"


async def test_a_paid_invoice_does_not_revive_a_canceled_subscription(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    await deliver(sessions, subscription_event("deleted", pk, created=T0 + 100))
    result = await deliver(sessions, invoice_event("paid", created=T0 + 200))
    assert result.message == "no change: personal canceled"
    assert (await row_of(sessions, pk)).status == "canceled"


async def test_a_failed_first_payment_gives_no_grace(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    incomplete = subscription_event("created", pk, created=T0, status="incomplete")
    assert (await deliver(sessions, incomplete)).activated == ()
    result = await deliver(sessions, invoice_event("payment_failed", created=T0 + 1))
    assert result.message == "ignored: payment failed on a incomplete subscription"
    row = await row_of(sessions, pk)
    assert row.status == "incomplete"
    assert entitled_tier(row, at(T0 + 2), GRACE) is Tier.FREE


async def test_an_unknown_price_grants_no_tier(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    pk = await new_account(sessions)
    event = subscription_event("created", pk, created=T0, price="price_not_ours")
    with caplog.at_level(logging.WARNING, logger="kamiyo.billing"):
        result = await deliver(sessions, event)
    assert result.message == "free active; unknown price price_not_ours: tier not granted"
    assert result.activated == ()
    assert "price_not_ours" in caplog.text
    row = await row_of(sessions, pk)
    assert (row.tier, row.status) == ("free", "active")
    # Once the price is one we sell, the tier comes (and with it the first activation).
    upgraded = subscription_event("updated", pk, created=T0 + 10, tier="team")
    assert (await deliver(sessions, upgraded)).activated == (pk,)


async def test_an_unknown_customer_is_acknowledged_and_creates_nothing(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    stranger = subscription_event("created", None, created=T0, customer="cus_stranger")
    result = await deliver(sessions, stranger)
    assert (result.status, result.message) == (200, "ignored: unknown customer cus_stranger")
    missing = subscription_event("created", pk + 1000, created=T0, customer="cus_other")
    assert (await deliver(sessions, missing)).message == "ignored: unknown customer cus_other"
    invoice = invoice_event("payment_failed", created=T0, sub="sub_stranger")
    assert (
        await deliver(sessions, invoice)
    ).message == "ignored: unknown subscription sub_stranger"
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Subscription)) == 0
        assert await session.scalar(select(func.count()).select_from(Account)) == 1
    assert set((await events_recorded(sessions)).values()) == {
        "ignored: unknown customer cus_stranger",
        "ignored: unknown customer cus_other",
        "ignored: unknown subscription sub_stranger",
    }


async def test_an_unknown_event_type_is_acknowledged_and_recorded(sessions: Sessions) -> None:
    event = fixture_event("invoice.paid", created=T0)
    event["type"] = "customer.created"
    result = await deliver(sessions, event)
    assert (result.status, result.message) == (
        200,
        "ignored: unhandled event type customer.created",
    )
    assert await events_recorded(sessions) == {event["id"]: result.message}


async def test_a_redelivery_is_acknowledged_and_changes_nothing(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    created = subscription_event("created", pk, created=T0)
    first = await deliver(sessions, created)
    await deliver(sessions, subscription_event("updated", pk, created=T0 + 10, tier="team"))
    again = await deliver(sessions, created)
    assert (first.duplicate, first.activated) == (False, (pk,))
    assert (again.status, again.duplicate, again.activated) == (200, True, ())
    assert (await row_of(sessions, pk)).tier == "team"
    assert (await events_recorded(sessions))[created["id"]] == "personal active"


def _forged(payload: bytes) -> str:
    return sign(payload, secret="whsec_test_not_the_secret")


def _stale(payload: bytes) -> str:
    return sign(payload, timestamp=int(time.time()) - TOLERANCE_S - 5)


def _tampered(payload: bytes) -> str:
    return sign(payload.replace(b'"personal"', b'"enterprise"'))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (lambda payload: None, "missing Stripe-Signature header"),
        (lambda payload: "", "missing Stripe-Signature header"),
        (_forged, "signature does not match"),
        (_tampered, "signature does not match"),
        (_stale, f"stale signature: timestamp older than {TOLERANCE_S} s"),
        (lambda payload: "v1=abc", "malformed Stripe-Signature header"),
        (
            lambda payload: f"t={int(time.time())},v0=abc",
            "no v1 signature in Stripe-Signature header",
        ),
    ],
    ids=["absent", "empty", "forged", "tampered", "stale", "no-timestamp", "no-v1"],
)
async def test_unverified_deliveries_are_refused_and_change_nothing(
    sessions: Sessions, header: Callable[[bytes], str | None], reason: str
) -> None:
    pk = await new_account(sessions)
    payload = encode(subscription_event("created", pk, created=T0))
    result = await handle_event(sessions, make_settings(), payload, header(payload))
    assert (result.status, result.message) == (400, reason)
    assert await subscription_of(sessions, pk) is None
    assert await events_recorded(sessions) == {}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"id": "evt_1", "type": "invoice.paid"', "malformed body: not a JSON event"),
        (b"\xff\xfe not utf-8", "malformed body: not a JSON event"),
        (b'["a", "list"]', "malformed body: not a JSON event"),
        (b'{"object": "event", "type": "invoice.paid"}', "malformed event: no id (and 2 more)"),
        (
            b'{"object": "event", "id": "evt_1", "type": "x", "created": 1, "data": {}}',
            "malformed event: no data.object",
        ),
    ],
    ids=["truncated", "not-utf8", "list", "no-id", "no-object"],
)
async def test_validly_signed_garbage_is_refused(
    sessions: Sessions, payload: bytes, reason: str
) -> None:
    try:
        header = sign(payload)
    except UnicodeDecodeError:  # Stripe signs text; any header will do, the body is refused first
        header = f"t={int(time.time())},v1=00"
    result = await handle_event(sessions, make_settings(), payload, header)
    assert (result.status, result.message) == (400, reason)
    assert await events_recorded(sessions) == {}


async def test_without_a_signing_secret_nothing_is_handled(sessions: Sessions) -> None:
    payload = encode(fixture_event("invoice.paid", created=T0))
    result = await handle_event(
        sessions, make_settings(stripe={"webhook_secret": None}), payload, sign(payload)
    )
    assert (result.status, result.message) == (503, "webhooks are not configured")


async def test_a_storm_of_duplicates_changes_state_once(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    payload = encode(subscription_event("created", pk, created=T0))
    header = sign(payload)
    settings = make_settings()
    results: list[WebhookResult] = []
    limit = anyio.Semaphore(50)

    async def one() -> None:
        async with limit:
            results.append(await handle_event(sessions, settings, payload, header))

    async with anyio.create_task_group() as group:
        for _ in range(1000):
            group.start_soon(one)

    assert len(results) == 1000
    assert all(result.status == 200 for result in results)
    assert sum(not result.duplicate for result in results) == 1
    assert [account for result in results for account in result.activated] == [pk]
    assert len(await events_recorded(sessions)) == 1
    row = await row_of(sessions, pk)
    assert (row.tier, row.status) == ("personal", "active")


async def test_concurrent_events_for_one_account_all_apply(sessions: Sessions) -> None:
    """The events of one checkout, each delivered five times at once, in no order."""
    pk = await new_account(sessions)
    events = [
        subscription_event("created", pk, created=T0, status="incomplete"),
        subscription_event("updated", pk, created=T0 + 1),
        checkout_event(pk, created=T0 + 2),
        invoice_event("paid", created=T0 + 2),
    ]
    deliveries = [(encode(event), sign(encode(event))) for event in events for _ in range(5)]
    settings = make_settings()
    results: list[WebhookResult] = []

    async def one(payload: bytes, header: str) -> None:
        results.append(await handle_event(sessions, settings, payload, header))

    async with anyio.create_task_group() as group:
        for payload, header in reversed(deliveries):
            group.start_soon(one, payload, header)

    assert all(result.status == 200 for result in results)
    assert sum(not result.duplicate for result in results) == len(events)
    assert [account for result in results for account in result.activated] == [pk]
    row = await row_of(sessions, pk)
    assert (row.tier, row.status, row.stripe_state_at) == ("personal", "active", at(T0 + 1))
    assert (row.stripe_customer_id, row.stripe_subscription_id) == (CUS, SUB)


# The Starlette route --------------------------------------------------------------------------


@pytest.fixture
async def http(sessions: Sessions) -> AsyncIterator[Callable[..., httpx2.AsyncClient]]:
    clients: list[httpx2.AsyncClient] = []

    def make(
        on_first_activation: Callable[[int], Awaitable[None]],
        settings: Settings | None = None,
        sessions_of: Callable[[], Sessions] = lambda: sessions,
    ) -> httpx2.AsyncClient:
        route = stripe_webhook_route(settings or make_settings(), sessions_of, on_first_activation)
        transport = httpx2.ASGITransport(app=Starlette(routes=[route]))
        client = httpx2.AsyncClient(transport=transport, base_url="http://kamiyo.test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def _nothing(account_pk: int) -> None:
    return None


async def test_the_route_applies_then_calls_back_after_commit(
    sessions: Sessions, http: Callable[..., httpx2.AsyncClient]
) -> None:
    pk = await new_account(sessions)
    seen: list[tuple[int, str | None]] = []

    async def welcome(account_pk: int) -> None:
        # A fresh session sees the change: the transaction committed before this ran.
        row = await subscription_of(sessions, account_pk)
        seen.append((account_pk, row.tier if row else None))

    client = http(welcome)
    payload = encode(subscription_event("created", pk, created=T0))
    headers = {"Stripe-Signature": sign(payload), "Content-Type": "application/json"}
    response = await client.post(PATH, content=payload, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "outcome": "personal active"}
    assert seen == [(pk, "personal")]

    again = await client.post(PATH, content=payload, headers=headers)
    assert again.json()["duplicate"] is True
    assert seen == [(pk, "personal")]


async def test_a_failing_callback_is_logged_not_returned(
    sessions: Sessions,
    http: Callable[..., httpx2.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pk = await new_account(sessions)

    async def broken(account_pk: int) -> None:
        raise RuntimeError("mail server down")

    payload = encode(subscription_event("created", pk, created=T0))
    with caplog.at_level(logging.ERROR, logger="kamiyo.web.webhooks"):
        response = await http(broken).post(
            PATH, content=payload, headers={"Stripe-Signature": sign(payload)}
        )
    assert response.status_code == 200
    assert f"first-activation follow-up failed for account {pk}" in caplog.text
    assert (await row_of(sessions, pk)).tier == "personal"


async def test_the_route_refuses_with_a_reason_and_no_traceback(
    sessions: Sessions,
    http: Callable[..., httpx2.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = http(_nothing)
    payload = encode(fixture_event("invoice.paid", created=T0))
    with caplog.at_level(logging.WARNING, logger="kamiyo.web.webhooks"):
        forged = await client.post(
            PATH, content=payload, headers={"Stripe-Signature": _forged(payload)}
        )
        unsigned = await client.post(PATH, content=payload)
    assert (forged.status_code, forged.json()) == (400, {"error": "signature does not match"})
    assert (unsigned.status_code, unsigned.json()) == (
        400,
        {"error": "missing Stripe-Signature header"},
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "stripe webhook rejected (400): signature does not match",
        "stripe webhook rejected (400): missing Stripe-Signature header",
    ]
    assert SECRET not in caplog.text
    assert (await client.get(PATH)).status_code == 405


async def test_the_route_refuses_large_bodies_before_reading_them(
    sessions: Sessions, http: Callable[..., httpx2.AsyncClient]
) -> None:
    client = http(_nothing)
    big = b"{" + b" " * MAX_BODY_BYTES + b"}"
    declared = await client.post(PATH, content=big, headers={"Stripe-Signature": sign(big)})
    assert (declared.status_code, declared.json()) == (413, {"error": "body over 1048576 bytes"})

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(20):
            yield b" " * 65536

    streamed = await client.post(PATH, content=chunks(), headers={"Stripe-Signature": "t=1,v1=0"})
    assert streamed.status_code == 413
    bogus = await client.post(PATH, content=b"{}", headers={"Content-Length": "lots"})
    assert bogus.status_code == 400
    assert await events_recorded(sessions) == {}


async def test_the_route_answers_503_without_a_secret_and_500_on_failure(
    sessions: Sessions,
    http: Callable[..., httpx2.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = encode(fixture_event("invoice.paid", created=T0))
    headers = {"Stripe-Signature": sign(payload)}
    with caplog.at_level(logging.WARNING, logger="kamiyo.web.webhooks"):
        unconfigured = http(_nothing, settings=make_settings(stripe={"webhook_secret": None}))
        response = await unconfigured.post(PATH, content=payload, headers=headers)
    assert (response.status_code, response.json()) == (
        503,
        {"error": "webhooks are not configured"},
    )
    assert "KAMIYO_STRIPE_WEBHOOK_SECRET is not set" in caplog.text

    def no_database() -> Sessions:
        raise RuntimeError("runtime not started")

    with caplog.at_level(logging.ERROR, logger="kamiyo.web.webhooks"):
        failing = http(_nothing, sessions_of=no_database)
        response = await failing.post(PATH, content=payload, headers=headers)
    assert (response.status_code, response.json()) == (500, {"error": "internal error"})
    assert "Traceback" not in response.text


async def test_a_storm_through_the_route_calls_back_once(
    sessions: Sessions, http: Callable[..., httpx2.AsyncClient]
) -> None:
    pk = await new_account(sessions)
    welcomed: list[int] = []

    async def welcome(account_pk: int) -> None:
        welcomed.append(account_pk)

    client = http(welcome)
    payload = encode(subscription_event("created", pk, created=T0))
    headers = {"Stripe-Signature": sign(payload)}
    statuses: list[int] = []
    limit = anyio.Semaphore(50)

    async def one() -> None:
        async with limit:
            statuses.append((await client.post(PATH, content=payload, headers=headers)).status_code)

    async with anyio.create_task_group() as group:
        for _ in range(300):
            group.start_soon(one)
    assert statuses == [200] * 300
    assert welcomed == [pk]
    assert len(await events_recorded(sessions)) == 1


async def test_an_event_waits_for_another_in_flight_for_the_same_account(
    sessions: Sessions,
) -> None:
    """Without the account lock, PostgreSQL would let the older event overwrite the newer."""
    pk = await new_account(sessions)
    await subscribe(sessions, pk)
    newer = subscription_event("updated", pk, created=T0 + 20, tier="enterprise")
    older = subscription_event("updated", pk, created=T0 + 10, tier="team")
    outcome: list[WebhookResult] = []

    async def deliver_older() -> None:
        outcome.append(await deliver(sessions, older))

    with anyio.fail_after(30):
        async with sessions() as session, session.begin():
            applied = await apply_subscription(
                session, make_settings().stripe, newer["data"]["object"], at(T0 + 20)
            )
            await session.flush()  # the newer state is written, not yet committed
            async with anyio.create_task_group() as group:
                group.start_soon(deliver_older)
                await anyio.sleep(0.5)
                assert outcome == []  # waiting for this transaction
                await session.commit()
    assert applied.outcome == "enterprise active"
    assert outcome[0].message.startswith(f"ignored: {SUB} out of order")
    row = await row_of(sessions, pk)
    assert (row.tier, row.stripe_state_at) == ("enterprise", at(T0 + 20))

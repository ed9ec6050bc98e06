"""Applying Stripe objects to subscription rows, function by function, on real databases."""

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grimp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.accounts import create_account, entitled_tier
from kamiyo.billing.stripe_objects import tier_for_price
from kamiyo.billing.subscriptions import (
    Applied,
    apply_checkout_completed,
    apply_invoice_paid,
    apply_invoice_payment_failed,
    apply_subscription,
)
from kamiyo.config import StripeSettings
from kamiyo.tiers import Tier
from tests.billing.test_webhooks import (
    CUS,
    DAY,
    GRACE,
    PRICES,
    SUB,
    T0,
    Sessions,
    at,
    checkout_event,
    invoice_event,
    make_settings,
    new_account,
    row_of,
    subscription_event,
    subscription_of,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def sessions(migrated_sessions: Sessions) -> Sessions:
    return migrated_sessions


Apply = Callable[[AsyncSession, StripeSettings, Mapping[str, Any], dt.datetime], Awaitable[Applied]]


async def apply(
    sessions: Sessions,
    function: Apply,
    event: dict[str, Any],
    settings: StripeSettings | None = None,
) -> Applied:
    """``function`` on the event's object at the event's time, committed."""
    async with sessions() as session, session.begin():
        obj = event["data"]["object"]
        return await function(
            session, settings or make_settings().stripe, obj, at(event["created"])
        )


def test_tier_for_price_reads_the_configured_prices_backwards() -> None:
    settings = make_settings().stripe
    assert tier_for_price(settings, PRICES["team"]) is Tier.TEAM
    assert tier_for_price(settings, "price_other") is None
    assert tier_for_price(settings, None) is None
    odd = make_settings(stripe={"prices": {"free": "price_free", "gold": "price_gold"}}).stripe
    assert tier_for_price(odd, "price_free") is None  # free is never sold
    assert tier_for_price(odd, "price_gold") is None  # not a tier of ours


async def test_the_account_is_found_by_subscription_then_customer(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await apply(sessions, apply_checkout_completed, checkout_event(pk, created=T0))
    # No metadata on the subscription: the link the checkout made finds the account.
    created = subscription_event("created", None, created=T0)
    assert (await apply(sessions, apply_subscription, created)).account_pk == pk
    # A new subscription of the same customer, still without metadata.
    other = subscription_event("created", None, created=T0 + DAY, sub="sub_test_9", tier="team")
    result = await apply(sessions, apply_subscription, other)
    assert (result.account_pk, result.outcome) == (pk, "team active")


@pytest.mark.parametrize("reference", ["999999", "12abc", "", "-1"])
async def test_a_bad_account_reference_finds_nobody(sessions: Sessions, reference: str) -> None:
    await new_account(sessions)
    event = subscription_event("created", None, created=T0, customer="cus_new")
    event["data"]["object"]["metadata"] = {"account_pk": reference}
    result = await apply(sessions, apply_subscription, event)
    assert result == Applied("ignored: unknown customer cus_new")


async def test_ids_held_by_another_account_are_not_taken(sessions: Sessions) -> None:
    first = await new_account(sessions, "first@example.com")
    second = await new_account(sessions, "second@example.com")
    await apply(sessions, apply_subscription, subscription_event("created", first, created=T0))
    # The second account's checkout names the first's customer: nothing moves.
    checkout = checkout_event(second, created=T0 + 1, sub="sub_test_2")
    result = await apply(sessions, apply_checkout_completed, checkout)
    assert result.outcome == f"ignored: {CUS} belongs to account {first}"
    assert await subscription_of(sessions, second) is None
    assert (await row_of(sessions, first)).stripe_subscription_id == SUB


async def test_checkout_links_only_subscription_checkouts_of_known_accounts(
    sessions: Sessions,
) -> None:
    pk = await new_account(sessions)
    payment = checkout_event(pk, created=T0, mode="payment")
    assert (await apply(sessions, apply_checkout_completed, payment)).outcome == (
        "ignored: checkout in payment mode"
    )
    anonymous = checkout_event(None, created=T0)
    assert (await apply(sessions, apply_checkout_completed, anonymous)).outcome == (
        f"ignored: unknown customer {CUS}"
    )
    # client_reference_id unreadable: the metadata names the account.
    linked = checkout_event(pk, created=T0)
    linked["data"]["object"]["client_reference_id"] = "kamiyo-user-fixture-1"
    result = await apply(sessions, apply_checkout_completed, linked)
    assert result.outcome == f"linked {CUS} {SUB}; free incomplete"
    assert await subscription_of(sessions, pk) is not None


async def test_checkout_leaves_a_second_subscription_to_its_events(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await apply(sessions, apply_subscription, subscription_event("created", pk, created=T0))
    second = checkout_event(pk, created=T0 + DAY, sub="sub_test_2")
    result = await apply(sessions, apply_checkout_completed, second)
    assert result.outcome.startswith(f"not linked: account holds {SUB}")
    assert (await row_of(sessions, pk)).stripe_subscription_id == SUB


async def test_of_two_live_subscriptions_the_higher_tier_holds(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await apply(sessions, apply_subscription, subscription_event("created", pk, created=T0))
    team = subscription_event("created", pk, created=T0 + 10, sub="sub_team", tier="team")
    assert (await apply(sessions, apply_subscription, team)).outcome == "team active"
    # The personal one renews later: it does not take the account back down.
    renewal = subscription_event("updated", pk, created=T0 + 30 * DAY)
    result = await apply(sessions, apply_subscription, renewal)
    assert result.outcome == f"ignored: {SUB} ranks below sub_team, which the account holds"
    row = await row_of(sessions, pk)
    assert (row.tier, row.stripe_subscription_id) == ("team", "sub_team")


async def test_statuses_too_long_for_the_column_are_stored_short(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    event = subscription_event("created", pk, created=T0, status="incomplete_expired")
    assert (await apply(sessions, apply_subscription, event)).outcome == "personal expired"
    row = await row_of(sessions, pk)
    assert row.status == "expired"
    assert entitled_tier(row, at(T0), GRACE) is Tier.FREE
    odd = subscription_event("updated", pk, created=T0 + 1, status="a_status_from_the_future")
    await apply(sessions, apply_subscription, odd)
    assert (await row_of(sessions, pk)).status == "unknown"


async def test_cancel_at_the_period_end_counts_as_cancel_at_period_end(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    event = subscription_event("created", pk, created=T0)
    obj = event["data"]["object"]
    obj["cancel_at"] = obj["items"]["data"][0]["current_period_end"]
    await apply(sessions, apply_subscription, event)
    assert (await row_of(sessions, pk)).cancel_at_period_end


async def test_the_highest_tier_among_the_items_decides(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    event = subscription_event("created", pk, created=T0)
    items = event["data"]["object"]["items"]["data"]
    extra = [dict(items[0], price={"id": "price_addon"}), dict(items[0], price=PRICES["team"])]
    items.extend(extra)  # an expanded price, an unknown one, and a plain id
    await apply(sessions, apply_subscription, event)
    row = await row_of(sessions, pk)
    assert (row.tier, row.stripe_price_id) == ("team", PRICES["team"])


async def test_older_api_shapes_still_apply(sessions: Sessions) -> None:
    """Before "basil": period end on the subscription, an invoice's subscription at the top."""
    pk = await new_account(sessions)
    event = subscription_event("created", pk, created=T0)
    obj = event["data"]["object"]
    del obj["items"]["data"][0]["current_period_end"]
    obj["current_period_end"] = T0 + 31 * DAY
    await apply(sessions, apply_subscription, event)
    assert (await row_of(sessions, pk)).current_period_end == at(T0 + 31 * DAY)
    failed = invoice_event("payment_failed", created=T0 + 31 * DAY)
    failed["data"]["object"]["parent"] = None
    failed["data"]["object"]["subscription"] = SUB
    assert (await apply(sessions, apply_invoice_payment_failed, failed)).outcome == (
        "personal past_due"
    )


async def test_a_tier_granted_by_hand_is_no_first_activation(sessions: Sessions) -> None:
    async with sessions() as session:
        account = await create_account(session, "vip@example.com", Tier.TEAM)
        await session.commit()
    event = subscription_event("created", account.pk, created=T0, tier="team")
    result = await apply(sessions, apply_subscription, event)
    assert (result.outcome, result.first_activation) == ("team active", False)


async def test_a_trial_is_a_first_activation_and_its_payment_is_not(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    trial = subscription_event("created", pk, created=T0, status="trialing")
    assert (await apply(sessions, apply_subscription, trial)).first_activation
    paid = subscription_event("updated", pk, created=T0 + 14 * DAY)
    assert not (await apply(sessions, apply_subscription, paid)).first_activation


async def test_recovering_from_unpaid_is_no_first_activation(sessions: Sessions) -> None:
    pk = await new_account(sessions)
    await apply(sessions, apply_subscription, subscription_event("created", pk, created=T0))
    unpaid = subscription_event("updated", pk, created=T0 + 40 * DAY, status="unpaid")
    await apply(sessions, apply_subscription, unpaid)
    assert entitled_tier(await row_of(sessions, pk), at(T0 + 40 * DAY), GRACE) is Tier.FREE
    paid = invoice_event("paid", created=T0 + 41 * DAY)
    result = await apply(sessions, apply_invoice_paid, paid)
    assert (result.outcome, result.first_activation) == ("personal active", False)


def test_billing_knows_nothing_of_the_surfaces() -> None:
    graph = grimp.build_graph("kamiyo", include_external_packages=True)
    for module in ("kamiyo.mcpserver", "kamiyo.web", "kamiyo.cli", "mcp", "starlette"):
        chain = graph.find_shortest_chain(
            importer="kamiyo.billing", imported=module, as_packages=True
        )
        assert chain is None, f"kamiyo.billing reaches {module}: {' -> '.join(chain or ())}"

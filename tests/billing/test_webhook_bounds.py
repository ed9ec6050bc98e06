"""Correctly signed Stripe deliveries with values out of any range Stripe uses (issue 11).

Each goes through the Starlette route on both backends, signed with the webhook secret as
Stripe signs (``tests/billing/test_webhooks.py``). None may answer 500 or stall: an envelope we
cannot record or order by is refused with a 400, an object we cannot use is acknowledged with a
200 and recorded, and either writes one WARNING, naming the field, never its value.
``tests/web/test_signed_hostile_values.py`` sends the same over HTTP to ``kamiyo serve``.
"""

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from kamiyo.billing.webhook_payload import MAX_DEPTH, nested_deeper_than
from kamiyo.billing.webhooks import TOLERANCE_S
from kamiyo.db.bounds import INTEGER_MAX, UNIX_TIME_MAX
from kamiyo.web.webhooks import PATH, stripe_webhook_route
from tests.billing.test_webhooks import (
    CUS,
    SUB,
    T0,
    Sessions,
    checkout_event,
    encode,
    events_recorded,
    fixture_event,
    invoice_event,
    make_settings,
    new_account,
    row_of,
    sign,
    subscription_event,
    subscription_of,
)

pytestmark = pytest.mark.anyio

Event = dict[str, Any]
FAR = 10**20  # the probe's time: year 3.2 trillion
HUGE_PK = str(INTEGER_MAX + 1)  # 2^31


@pytest.fixture
def sessions(migrated_sessions: Sessions) -> Sessions:
    return migrated_sessions


@pytest.fixture
async def client(sessions: Sessions) -> AsyncIterator[httpx2.AsyncClient]:
    async def nothing(account_pk: int) -> None:
        return None

    route = stripe_webhook_route(make_settings(), lambda: sessions, nothing)
    transport = httpx2.ASGITransport(app=Starlette(routes=[route]))
    async with httpx2.AsyncClient(transport=transport, base_url="http://kamiyo.test") as http:
        yield http


async def post(
    client: httpx2.AsyncClient, payload: bytes, *, signed_at: int | None = None
) -> httpx2.Response:
    header = sign(payload, timestamp=signed_at)
    return await client.post(PATH, content=payload, headers={"Stripe-Signature": header})


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Everything KAMIYO logged at WARNING or above (any traceback would come with it)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("kamiyo")
    ]


# Events an account of ours could receive, each with one value no Stripe event has ------------


def subscription_with(change: Callable[[dict[str, Any]], None], account_pk: int) -> Event:
    event = subscription_event("updated", account_pk, created=T0)
    change(event["data"]["object"])
    return event


def _only_subscription_end(obj: dict[str, Any]) -> None:
    del obj["items"]["data"][0]["current_period_end"]  # the fallback is read only then
    obj["current_period_end"] = FAR


def _item_end(obj: dict[str, Any]) -> None:
    obj["items"]["data"][0]["current_period_end"] = FAR


def _cancel_at(obj: dict[str, Any]) -> None:
    obj.update(cancel_at_period_end=False, cancel_at=FAR)


# (how to break the subscription object, the reason recorded after "ignored: unusable ...: ")
UNUSABLE_SUBSCRIPTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "period-end-1e20": (
        _only_subscription_end,
        f"current_period_end: Input should be less than or equal to {UNIX_TIME_MAX}",
    ),
    "item-period-end-1e20": (
        _item_end,
        f"items.data.0.current_period_end: Input should be less than or equal to {UNIX_TIME_MAX}",
    ),
    "cancel-at-1e20": (
        _cancel_at,
        f"cancel_at: Input should be less than or equal to {UNIX_TIME_MAX}",
    ),
    "id-with-nul": (
        lambda obj: obj.update(id="sub_\x00x"),
        "id: Value error, not printable text",
    ),
    "customer-too-long": (
        lambda obj: obj.update(customer="cus_" + "x" * 61),
        "customer: String should have at most 64 characters",
    ),
    "status-with-nul": (
        lambda obj: obj.update(status="active\x00"),
        "status: Value error, not printable text",
    ),
    "price-lone-surrogate": (
        lambda obj: obj["items"]["data"][0]["price"].update(id="price_\ud800"),
        "items.data.0.price: Input should be a valid string, unable to parse raw data as a "
        "unicode string",
    ),
    "period-end-float": (
        lambda obj: obj["items"]["data"][0].update(current_period_end=1.5e9),
        "items.data.0.current_period_end: Input should be a valid integer",
    ),
    "cancel-flag-string": (
        lambda obj: obj.update(cancel_at_period_end="yes"),
        "cancel_at_period_end: Input should be a valid boolean",
    ),
}


@pytest.mark.parametrize("case", UNUSABLE_SUBSCRIPTIONS)
async def test_an_unusable_subscription_is_acknowledged_recorded_and_not_applied(
    sessions: Sessions,
    client: httpx2.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    change, reason = UNUSABLE_SUBSCRIPTIONS[case]
    pk = await new_account(sessions)
    event = subscription_with(change, pk)
    with caplog.at_level(logging.INFO, logger="kamiyo"):
        response = await post(client, encode(event))
    outcome = f"ignored: unusable subscription: {reason}"
    assert (response.status_code, response.json()) == (
        200,
        {"received": True, "duplicate": False, "outcome": outcome},
    )
    assert await events_recorded(sessions) == {event["id"]: outcome}
    assert await subscription_of(sessions, pk) is None
    assert warnings(caplog) == [f"stripe event {event['id']} ({event['type']}): {outcome}"]
    # A redelivery is a duplicate, as for any recorded event.
    again = await post(client, encode(event))
    assert (again.status_code, again.json()["duplicate"]) == (200, True)


async def test_unusable_checkouts_and_invoices_are_acknowledged_too(
    sessions: Sessions, client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    pk = await new_account(sessions)
    checkout = checkout_event(pk, created=T0, customer="cus_\x00")
    invoice = invoice_event("paid", created=T0, sub="sub_" + "x" * 100)
    with caplog.at_level(logging.WARNING, logger="kamiyo"):
        answers = [await post(client, encode(event)) for event in (checkout, invoice)]
    assert [(a.status_code, a.json()["outcome"]) for a in answers] == [
        (200, "ignored: unusable checkout: customer: Value error, not printable text"),
        (
            200,
            "ignored: unusable invoice: parent.subscription_details.subscription: "
            "String should have at most 64 characters",
        ),
    ]
    assert len(warnings(caplog)) == 2
    assert await subscription_of(sessions, pk) is None


# Account references any integration may set: a value that is no pk of ours is no reference ----


async def test_account_references_beyond_32_bits_are_not_ours(
    sessions: Sessions, client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    pk = await new_account(sessions)
    by_reference = checkout_event(None, created=T0, customer="cus_a", sub="sub_a")
    by_reference["data"]["object"]["client_reference_id"] = HUGE_PK
    by_metadata = checkout_event(None, created=T0, customer="cus_b", sub="sub_b")
    by_metadata["data"]["object"]["metadata"] = {"account_pk": HUGE_PK}
    subscription = subscription_event("created", None, created=T0, customer="cus_c", sub="sub_c")
    subscription["data"]["object"]["metadata"] = {"account_pk": "9" * 30}
    with caplog.at_level(logging.WARNING, logger="kamiyo"):
        answers = [
            await post(client, encode(event)) for event in (by_reference, by_metadata, subscription)
        ]
    assert [(a.status_code, a.json()["outcome"]) for a in answers] == [
        (200, "ignored: unknown customer cus_a"),
        (200, "ignored: unknown customer cus_b"),
        (200, "ignored: unknown customer cus_c"),
    ]
    assert warnings(caplog) == []  # as for any customer not ours
    assert await subscription_of(sessions, pk) is None

    # The event still applies through what does name the account: its known ids.
    await post(client, encode(subscription_event("created", pk, created=T0)))
    updated = subscription_event("updated", None, created=T0 + 10, tier="team")
    updated["data"]["object"]["metadata"] = {"account_pk": HUGE_PK}
    response = await post(client, encode(updated))
    assert response.json()["outcome"] == "team active"
    row = await row_of(sessions, pk)
    assert (row.tier, row.stripe_subscription_id, row.stripe_customer_id) == ("team", SUB, CUS)


# Envelopes we cannot record or order by: refused, nothing recorded ---------------------------


def _event_with(**changes: Any) -> Event:
    event = fixture_event("invoice.paid", created=T0)
    event.update(changes)
    return event


REFUSED_ENVELOPES: dict[str, tuple[Callable[[], bytes], str]] = {
    "id-with-nul": (
        lambda: encode(_event_with(id="evt_\x00x")),
        "malformed event: id: Value error, not printable text",
    ),
    "id-too-long": (
        lambda: encode(_event_with(id="evt_" + "x" * 252)),
        "malformed event: id: String should have at most 255 characters",
    ),
    "type-with-nul": (
        lambda: encode(_event_with(type="invoice.\x00")),
        "malformed event: type: Value error, not printable text",
    ),
    "created-1e12": (
        lambda: encode(_event_with(created=10**12)),
        f"malformed event: created: Input should be less than or equal to {UNIX_TIME_MAX}",
    ),
    "created-negative": (
        lambda: encode(_event_with(created=-1)),
        "malformed event: created: Input should be greater than or equal to 0",
    ),
    "created-float": (
        lambda: encode(_event_with(created=1.7e9)),
        "malformed event: created: Input should be a valid integer",
    ),
    "created-bool": (
        lambda: encode(_event_with(created=True)),
        "malformed event: created: Input should be a valid integer",
    ),
    "created-after-signing": (
        lambda: encode(_event_with(created=int(time.time()) + 3600)),
        "malformed event: created after it was signed",
    ),
    "object-not-an-object": (
        lambda: encode(_event_with(data={"object": [1, 2]})),
        "malformed event: data.object: Input should be a valid dictionary",
    ),
    "nan": (
        lambda: encode(_event_with()).replace(b'"livemode": false', b'"livemode": NaN'),
        "malformed body: not a JSON event",
    ),
    "number-of-5000-digits": (
        lambda: encode(_event_with(amount=int("9" * 4000))).replace(b"9" * 4000, b"9" * 5000),
        "malformed body: not a JSON event",
    ),
    "nested-50000-deep": (
        lambda: encode(_event_with(padding=None)).replace(
            b'"padding": null', b'"padding": ' + b"[" * 50_000 + b"]" * 50_000
        ),
        f"malformed body: nested deeper than {MAX_DEPTH} levels",
    ),
}


@pytest.mark.parametrize("case", REFUSED_ENVELOPES)
async def test_an_unusable_envelope_is_refused_with_one_warning(
    sessions: Sessions,
    client: httpx2.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    make, reason = REFUSED_ENVELOPES[case]
    with caplog.at_level(logging.INFO, logger="kamiyo"):
        response = await post(client, make())
    assert (response.status_code, response.json()) == (400, {"error": reason})
    assert warnings(caplog) == [f"stripe webhook rejected (400): {reason}"]
    assert await events_recorded(sessions) == {}


async def test_nesting_up_to_the_bound_is_accepted(
    sessions: Sessions, client: httpx2.AsyncClient
) -> None:
    """Stripe's deepest event is 11 levels; an unread field may nest up to the bound."""
    event = fixture_event("invoice.paid", created=T0)
    depth_of_field = MAX_DEPTH - 1  # inside the event, itself one level
    event["unread"] = json.loads("[" * depth_of_field + "]" * depth_of_field)
    assert (await post(client, encode(event))).status_code == 200
    event = fixture_event("invoice.paid", created=T0)
    event["unread"] = json.loads("[" * (depth_of_field + 1) + "]" * (depth_of_field + 1))
    assert (await post(client, encode(event))).status_code == 400


# The signature's time, both ways -------------------------------------------------------------


async def test_a_signature_from_the_future_is_refused_like_a_stale_one(
    sessions: Sessions, client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    payload = encode(fixture_event("invoice.paid", created=T0))
    now = int(time.time())
    with caplog.at_level(logging.WARNING, logger="kamiyo"):
        ahead = await post(client, payload, signed_at=now + TOLERANCE_S + 60)
        far = await post(client, payload, signed_at=10**20)
        stale = await post(client, payload, signed_at=now - TOLERANCE_S - 60)
    future = f"future signature: timestamp over {TOLERANCE_S} s ahead"
    assert [(r.status_code, r.json()["error"]) for r in (ahead, far, stale)] == [
        (400, future),
        (400, future),
        (400, f"stale signature: timestamp older than {TOLERANCE_S} s"),
    ]
    assert len(warnings(caplog)) == 3
    assert await events_recorded(sessions) == {}
    # Within the tolerance, either way, is Stripe's clock and ours disagreeing a little.
    assert (await post(client, payload, signed_at=now + TOLERANCE_S - 60)).status_code == 200


# The depth check on its own ------------------------------------------------------------------


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


TRICKY = [
    {"a": "[[[[[[[[", "b": "]]]]]"},
    {"quote\\": ['\\"[[[', '\\\\"', "\\\\\\"], "x": [[["{"]]]},
    [{"\u00e9\u4e2d\U0001f600": [["}}}}"]]}],
    {"k": [[], {}, [[]], {"z": {"y": {}}}]},
    "[[[",
    [],
    3,
]


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_depth_is_exact_with_brackets_and_escapes_inside_strings(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        payload = text.encode()
        depth = _depth(value)
        assert not nested_deeper_than(payload, depth)
        if depth > 0:
            assert nested_deeper_than(payload, depth - 1)

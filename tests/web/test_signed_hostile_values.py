"""Correctly signed webhooks and tokens with hostile values, over HTTP (issue 11).

One ``kamiyo serve --transport http`` on PostgreSQL (where a pk beyond 32 bits or NUL in text
is a database error), with a webhook secret and a signing key. Each case is signed with them
as Stripe or ``tokens.sign_claims`` signs, and must get a 4xx or a 200, never a 500, in about
the time any request takes, with at most one WARNING in the server's log and no traceback.
"""

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from kamiyo.access import tokens
from kamiyo.billing.webhook_payload import MAX_DEPTH
from kamiyo.billing.webhooks import TOLERANCE_S
from kamiyo.config import AuthSettings
from kamiyo.db.bounds import INTEGER_MAX, UNIX_TIME_MAX
from kamiyo.web.webhooks import PATH
from tests.billing.test_webhooks import (
    SECRET,
    checkout_event,
    encode,
    fixture_event,
    sign,
    subscription_event,
)
from tests.conftest import PostgresDatabases
from tests.mcpserver.conftest import http_server_process, run_kamiyo

pytestmark = pytest.mark.anyio

SIGNING_KEY = "hostile-values-" + "k" * 40
AUTH = AuthSettings(secret_key=SIGNING_KEY, _env_file=None)
FAR = 10**20
HUGE_PK = str(INTEGER_MAX + 1)
Event = dict[str, Any]


@dataclass
class Served:
    url: str
    log: Path
    account_pk: int
    read_up_to: int = 0

    def new_log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written since the last call (not the start-up banner)."""
        text = self.log.read_bytes()
        fresh, self.read_up_to = text[self.read_up_to :], len(text)
        assert b"Traceback" not in fresh
        return [json.loads(line) for line in fresh.splitlines() if line.startswith(b"{")]


@pytest.fixture(scope="module")
async def served(
    tmp_path_factory: pytest.TempPathFactory, postgres_databases: PostgresDatabases
) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("hostile-values")
    env = {
        "KAMIYO_DATABASE_URL": await postgres_databases.create(),
        "KAMIYO_STRIPE_WEBHOOK_SECRET": SECRET,
        "KAMIYO_SECRET_KEY": SIGNING_KEY,
    }
    run_kamiyo(folder, "accounts", "create", "hostile@example.com", env=env)
    shown = run_kamiyo(folder, "accounts", "show", "hostile@example.com", "--json", env=env)
    account_pk = json.loads(shown.stdout)["pk"]
    with http_server_process(folder, [], env) as (url, _):
        served = Served(url, folder / "server.log", account_pk)
        served.new_log_lines()
        yield served


def _now() -> int:
    return int(time.time())


def _subscription(account_pk: int, change: Callable[[Event, dict[str, Any]], None]) -> Event:
    event = subscription_event("updated", account_pk, created=_now() - 60)
    change(event, event["data"]["object"])
    return event


def _checkout(change: Callable[[dict[str, Any]], None]) -> Event:
    event = checkout_event(None, created=_now() - 60, customer="cus_stranger")
    change(event["data"]["object"])
    return event


def _no_item_end(obj: dict[str, Any]) -> None:
    del obj["items"]["data"][0]["current_period_end"]
    obj["current_period_end"] = FAR


def _deep(account_pk: int) -> bytes:
    text = encode(fixture_event("invoice.paid", created=_now() - 60))
    return text[:-1] + b', "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"


LE_MAX = f"Input should be less than or equal to {UNIX_TIME_MAX}"
UNUSABLE = "ignored: unusable subscription:"
# name: (the body for the served account's pk, expected status, expected answer text)
CASES: dict[str, tuple[Callable[[int], bytes], int, str]] = {
    "event-id-with-nul": (
        lambda pk: encode(_subscription(pk, lambda e, o: e.update(id="evt_\x00"))),
        400,
        "malformed event: id: Value error, not printable text",
    ),
    "created-1e12": (
        lambda pk: encode(_subscription(pk, lambda e, o: e.update(created=10**12))),
        400,
        f"malformed event: created: {LE_MAX}",
    ),
    "client-reference-id-2^31": (
        lambda pk: encode(_checkout(lambda o: o.update(client_reference_id=HUGE_PK))),
        200,
        "ignored: unknown customer cus_stranger",
    ),
    "checkout-metadata-account-pk-2^31": (
        lambda pk: encode(_checkout(lambda o: o.update(metadata={"account_pk": HUGE_PK}))),
        200,
        "ignored: unknown customer cus_stranger",
    ),
    "subscription-metadata-account-pk-2^31": (
        lambda pk: encode(
            _subscription(
                pk, lambda e, o: o.update(metadata={"account_pk": HUGE_PK}, customer="cus_x")
            )
        ),
        200,
        "ignored: unknown customer cus_x",
    ),
    "current-period-end-1e20": (
        lambda pk: encode(_subscription(pk, lambda e, o: _no_item_end(o))),
        200,
        f"{UNUSABLE} current_period_end: {LE_MAX}",
    ),
    "item-period-end-1e20": (
        lambda pk: encode(
            _subscription(pk, lambda e, o: o["items"]["data"][0].update(current_period_end=FAR))
        ),
        200,
        f"{UNUSABLE} items.data.0.current_period_end: {LE_MAX}",
    ),
    "cancel-at-1e20": (
        lambda pk: encode(
            _subscription(pk, lambda e, o: o.update(cancel_at_period_end=False, cancel_at=FAR))
        ),
        200,
        f"{UNUSABLE} cancel_at: {LE_MAX}",
    ),
    "subscription-id-with-nul": (
        lambda pk: encode(_subscription(pk, lambda e, o: o.update(id="sub_\x00"))),
        200,
        f"{UNUSABLE} id: Value error, not printable text",
    ),
    "nested-50000-deep": (_deep, 400, f"malformed body: nested deeper than {MAX_DEPTH} levels"),
}


@pytest.mark.parametrize("case", CASES)
async def test_signed_deliveries_out_of_range_get_an_answer_not_a_500(
    served: Served, case: str
) -> None:
    make, status, text = CASES[case]
    payload = make(served.account_pk)
    async with httpx2.AsyncClient(timeout=120) as http:
        response = await http.post(
            served.url + PATH, content=payload, headers={"Stripe-Signature": sign(payload)}
        )
    assert response.status_code == status
    answer = response.json()
    assert (answer["error"] if status == 400 else answer["outcome"]) == text
    # The 50,000-deep body once took 52 s and stalled the server: its answer names the depth
    # limit, checked before the body is parsed, rather than a parser's error after it.
    lines = served.new_log_lines()
    loud = [line for line in lines if line["level"] not in ("DEBUG", "INFO")]
    if status == 400:
        assert [line["message"] for line in loud] == [f"stripe webhook rejected (400): {text}"]
    elif text.startswith(UNUSABLE):
        assert [(line["level"], line["message"].endswith(text)) for line in loud] == [
            ("WARNING", True)
        ]
    else:
        assert loud == []


async def test_a_signature_dated_ahead_is_refused_over_http(served: Served) -> None:
    payload = encode(fixture_event("invoice.paid", created=_now() - 60))
    header = sign(payload, timestamp=_now() + 86_400)
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            served.url + PATH, content=payload, headers={"Stripe-Signature": header}
        )
    reason = f"future signature: timestamp over {TOLERANCE_S} s ahead"
    assert (response.status_code, response.json()) == (400, {"error": reason})
    assert [line["message"] for line in served.new_log_lines() if line["level"] != "INFO"] == [
        f"stripe webhook rejected (400): {reason}"
    ]


def _token(**changes: object) -> str:
    now = _now()
    claims: dict[str, object] = {
        "sub": "1", "aud": AUTH.jwt_audience, "iss": AUTH.jwt_issuer, "iat": now, "nbf": now,
        "exp": now + 3600, "jti": "hostile-1",
    }  # fmt: skip
    return tokens.sign_claims(AUTH, claims | changes)


TOKENS: dict[str, tuple[dict[str, object], str]] = {
    "sub-2^31": ({"sub": HUGE_PK}, "token subject is not an account"),
    "exp-1e20": ({"exp": FAR}, "token's 'exp' claim is out of range"),
    "jti-with-nul": ({"jti": "j\x00"}, "token's 'jti' claim is not printable text"),
}


@pytest.mark.parametrize("case", TOKENS)
async def test_signed_tokens_out_of_range_get_401_not_503(served: Served, case: str) -> None:
    changes, reason = TOKENS[case]
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {_token(**changes)}",
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "hostile", "version": "0"},
        },
    }
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{served.url}/mcp", json=initialize, headers=headers)
    description = f"Access token refused: {reason}."
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": description}
    lines = served.new_log_lines()
    assert [line["level"] for line in lines if line["level"] not in ("DEBUG", "INFO")] == []
    assert any(f"401 on POST /mcp: {description}" in line["message"] for line in lines)

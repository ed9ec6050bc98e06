"""The REST intelligence endpoints: the same gate and answers as the tools, rendered as HTTP."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import http_sf
import httpx2
import pytest

from kamiyo.access import accounts, keys
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver.server import build_server
from kamiyo.tiers import TIERS, Tier
from kamiyo.web.app import create_app

pytestmark = pytest.mark.anyio


@dataclass
class Rest:
    http: httpx2.AsyncClient
    enterprise: str  # an API key


@pytest.fixture
async def rest(empty_database_url: str) -> AsyncIterator[Rest]:
    settings = Settings(
        database=DatabaseSettings(url=empty_database_url), environment="test", _env_file=None
    )
    app = create_app(settings, build_server)
    async with app.router.lifespan_context(app):
        engine = create_engine(empty_database_url)
        try:
            async with session_factory(engine)() as session:
                account = await accounts.create_account(
                    session, "rest@example.com", Tier.ENTERPRISE
                )
                key = (await keys.create_key(session, account, "rest")).key
                await session.commit()
        finally:
            await engine.dispose()
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.9", 40000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Rest(http, key)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_anonymous_search_gets_the_free_tier(rest: Rest) -> None:
    response = await rest.http.get("/api/v1/exploits", params={"query": "flash loan", "limit": 50})
    assert response.status_code == 200, response.text
    incidents = response.json()["incidents"]
    assert 0 < len(incidents) <= 10  # the free tier's cap


async def test_each_endpoint_answers_an_enterprise_key(rest: Rest) -> None:
    auth = _bearer(rest.enterprise)
    found = await rest.http.get("/api/v1/exploits", params={"query": "euler"}, headers=auth)
    first = found.json()["incidents"][0]
    one = await rest.http.get(f"/api/v1/exploits/{first['id']}", headers=auth)
    assert one.status_code == 200
    assert one.json()["id"] == first["id"]
    risk = await rest.http.get("/api/v1/risk/Euler", headers=auth)
    assert risk.json()["incident_count"] >= 1
    assert risk.json()["recommendations"]  # enterprise detail
    wallet = await rest.http.get(
        "/api/v1/wallets/0x2419432344b0b892e592b2601b98eae702ba360e", headers=auth
    )
    assert wallet.json()["verdict"] == "block"
    stats = await rest.http.get("/api/v1/stats", params={"group_by": "chain"}, headers=auth)
    assert stats.status_code == 200
    assert stats.json()["rows"]


async def test_a_locked_endpoint_names_the_tier_that_unlocks_it(rest: Rest) -> None:
    response = await rest.http.get("/api/v1/wallets/0x2419432344b0b892e592b2601b98eae702ba360e")
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "forbidden"
    assert body["error"]["details"]["required_tier"] == "team"
    assert "check_wallet_interactions needs the team tier" in body["error"]["message"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"attack_type": "telepathy"}, "attack_type"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_parameters_get_a_400_that_names_them(
    rest: Rest, params: dict[str, str], message: str
) -> None:
    response = await rest.http.get("/api/v1/exploits", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_arguments"
    assert message in response.json()["error"]["message"]


async def test_an_unknown_incident_and_a_bad_key(rest: Rest) -> None:
    missing = await rest.http.get("/api/v1/exploits/nope", headers=_bearer(rest.enterprise))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert "No incident with id 'nope'" in missing.json()["error"]["message"]
    refused = await rest.http.get("/api/v1/stats", headers=_bearer("kmy_live_" + "x" * 43))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    # The challenge is OAuth's; its body is the REST envelope (the MCP endpoints keep OAuth's).
    assert refused.json()["error"]["code"] == "invalid_token"
    assert set(refused.json()) == {"error"}


async def test_a_nul_in_the_path_is_a_400_on_every_backend(rest: Rest) -> None:
    """It was a 500 with a traceback on PostgreSQL."""
    response = await rest.http.get("/api/v1/exploits/a%00b", headers=_bearer(rest.enterprise))
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid_arguments"
    assert "exploit_id: must not contain a NUL character (U+0000)" in body["error"]["message"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_loss_usd": "Infinity"}, "min_loss_usd: Input should be a finite number"),
        ({"min_loss_usd": "nan"}, "min_loss_usd: Input should be a finite number"),
        ({"limit": "true"}, "limit"),
        ({"since": "86400"}, "since: must be a date as YYYY-MM-DD"),
        ({"query": "eu\x00ler"}, "query: must not contain a NUL"),
    ],
)
async def test_lenient_values_get_a_400(rest: Rest, params: dict[str, str], message: str) -> None:
    response = await rest.http.get(
        "/api/v1/exploits", params=params, headers=_bearer(rest.enterprise)
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


async def test_numbers_in_query_parameters_still_parse(rest: Rest) -> None:
    response = await rest.http.get(
        "/api/v1/exploits",
        params={"limit": "5", "min_loss_usd": "1000000", "since": "2020-01-01"},
        headers=_bearer(rest.enterprise),
    )
    assert response.status_code == 200, response.text
    incidents = response.json()["incidents"]
    assert len(incidents) == 5
    assert all(i["loss_usd"] >= 1_000_000 for i in incidents)


async def test_invalid_requests_count_against_the_limits(rest: Rest) -> None:
    statuses = [
        (await rest.http.get("/api/v1/exploits", params={"limit": "abc"})).status_code
        for _ in range(10)
    ]
    refused = await rest.http.get("/api/v1/risk/euler", params={"limit": "abc"})
    assert statuses == [400] * 10
    assert refused.status_code == 429  # the free tier's 10 a minute, by client address
    assert refused.json()["error"]["code"] == "rate_limited"
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 60
    # The IETF fields name the limit reached: nothing left of it until Retry-After.
    assert _fields(refused.headers["ratelimit-policy"]) == [("minute", {"q": 10, "w": 60})]
    assert _fields(refused.headers["ratelimit"]) == [("minute", {"r": 0, "t": retry})]


def _fields(value: str) -> Any:
    return http_sf.parse(value.encode(), tltype="list")


async def test_answers_say_where_the_rate_limits_stand(rest: Rest) -> None:
    enterprise = TIERS[Tier.ENTERPRISE]
    answers = [await rest.http.get("/api/v1/stats", headers=_bearer(rest.enterprise)) for _ in "ab"]
    assert all(a.status_code == 200 for a in answers)
    assert _fields(answers[0].headers["ratelimit-policy"]) == [
        ("minute", {"q": enterprise.requests_per_minute, "w": 60}),
        ("day", {"q": enterprise.requests_per_day, "w": 86_400}),
    ]
    left = [{name: p["r"] for name, p in _fields(a.headers["ratelimit"])} for a in answers]
    assert left[0] == {
        "minute": enterprise.requests_per_minute - 1,
        "day": enterprise.requests_per_day - 1,
    }
    assert left[1] == {name: value - 1 for name, value in left[0].items()}
    resets = {name: p["t"] for name, p in _fields(answers[1].headers["ratelimit"])}
    assert 0 < resets["minute"] <= 60
    assert 0 < resets["day"] <= 86_400
    assert "RateLimit" in answers[0].headers["access-control-expose-headers"]


async def test_search_pages_with_next_cursor(rest: Rest) -> None:
    first = await rest.http.get(
        "/api/v1/exploits",
        params={"query": "flash loan", "limit": 3},
        headers=_bearer(rest.enterprise),
    )
    cursor = first.json()["next_cursor"]
    assert cursor
    second = await rest.http.get(
        "/api/v1/exploits",
        params={"query": "flash loan", "limit": 3, "cursor": cursor},
        headers=_bearer(rest.enterprise),
    )
    assert second.status_code == 200, second.text
    assert {i["id"] for i in second.json()["incidents"]}.isdisjoint(
        {i["id"] for i in first.json()["incidents"]}
    )
    other = await rest.http.get(
        "/api/v1/exploits", params={"query": "reentrancy", "cursor": cursor}
    )
    assert other.status_code == 400
    assert "belongs to another search" in other.json()["error"]["message"]

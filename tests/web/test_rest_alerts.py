"""The alert-rule routes: POST and DELETE beside the GET routes, through the same pipeline."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import pytest

from kamiyo.access import accounts, keys
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver.server import build_server
from kamiyo.tiers import Tier
from kamiyo.web.api import MAX_BODY_BYTES
from kamiyo.web.app import create_app

pytestmark = pytest.mark.anyio

WEBHOOK = "https://hooks.example.com/rest"


@dataclass
class Rest:
    http: httpx2.AsyncClient
    team: dict[str, str]  # the Authorization header of a team key
    other: dict[str, str]  # another team account's


@pytest.fixture
async def rest(empty_database_url: str) -> AsyncIterator[Rest]:
    settings = Settings(
        database=DatabaseSettings(url=empty_database_url), environment="test", _env_file=None
    )
    app = create_app(settings, build_server)
    async with app.router.lifespan_context(app):
        engine = create_engine(empty_database_url)
        made = []
        try:
            async with session_factory(engine)() as session:
                for email in ("rest-team@example.com", "rest-other@example.com"):
                    account = await accounts.create_account(session, email, Tier.TEAM)
                    made.append((await keys.create_key(session, account, "rest")).key)
                await session.commit()
        finally:
            await engine.dispose()
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.10", 40000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Rest(http, *({"Authorization": f"Bearer {key}"} for key in made))


async def test_create_list_test_delete(rest: Rest) -> None:
    body = {"filters": {"chains": ["bsc"], "attack_types": ["flash_loan"]}, "webhook_url": WEBHOOK}
    created = await rest.http.post("/api/v1/alerts", json=body, headers=rest.team)
    assert created.status_code == 200, created.text
    alert = created.json()["alert"]
    assert created.json()["secret"].startswith("whsec_")
    alert_id = alert["alert_id"]

    listed = await rest.http.get("/api/v1/alerts", headers=rest.team)
    assert [a["alert_id"] for a in listed.json()["alerts"]] == [alert_id]
    assert (await rest.http.get("/api/v1/alerts", headers=rest.other)).json()["alerts"] == []

    queued = await rest.http.post(f"/api/v1/alerts/{alert_id}/test", headers=rest.team)
    assert queued.status_code == 200, queued.text
    assert queued.json()["delivery_id"].startswith("msg_")

    stranger = await rest.http.delete(f"/api/v1/alerts/{alert_id}", headers=rest.other)
    assert stranger.status_code == 404
    assert stranger.json()["error"]["code"] == "not_found"
    deleted = await rest.http.delete(f"/api/v1/alerts/{alert_id}", headers=rest.team)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["cancelled_deliveries"] == 1
    again = await rest.http.delete(f"/api/v1/alerts/{alert_id}", headers=rest.team)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "The body is not valid JSON."),
        (b"[1, 2]", "The body must be a JSON object."),
        (b'{"filters": {}, "colour": "red"}', "Unknown argument(s) for create_alert: colour."),
        (b'{"filters": {"min_loss_usd": -1}}', "filters: min_loss_usd"),
        (b"", "filters: Field required"),
    ],
)
async def test_bad_bodies_are_400_with_one_line(rest: Rest, content: bytes, says: str) -> None:
    headers = rest.team | {"Content-Type": "application/json"}
    response = await rest.http.post("/api/v1/alerts", content=content, headers=headers)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["error"]["code"] == "invalid_arguments"
    assert says in problem["error"]["message"]
    assert "for create_alert: " in problem["error"]["message"]


async def test_an_oversized_body_is_refused_before_it_is_read(rest: Rest) -> None:
    content = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = await rest.http.post(
        "/api/v1/alerts", content=content, headers=rest.team | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_anonymous_callers_are_told_which_tier_unlocks_alerts(rest: Rest) -> None:
    response = await rest.http.post(
        "/api/v1/alerts", json={"filters": {}, "webhook_url": "https://hooks.example.com/k"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["details"]["required_tier"] == "team"
    listed = await rest.http.get("/api/v1/alerts")
    assert listed.status_code == 403


async def test_a_route_answers_only_its_methods(rest: Rest) -> None:
    response = await rest.http.put("/api/v1/alerts", json={}, headers=rest.team)
    assert response.status_code == 405
    response = await rest.http.get("/api/v1/alerts/alr_x/test", headers=rest.team)
    assert response.status_code == 405

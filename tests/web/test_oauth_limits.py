"""The OAuth endpoints' rate limits: per client address, 429 with Retry-After and an RFC 6749
error body, a log line, nothing stored; counted in memory, or in Redis shared by instances."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.oauth import OAuthClient
from kamiyo.mcpserver.server import build_server
from kamiyo.web.app import create_app
from tests.web.oauth_helpers import BASE, REDIRECT, pkce

pytestmark = pytest.mark.anyio

TIGHT = {
    "oauth_register_limit": "2/minute",
    "oauth_authorize_limit": "2/minute",
    "oauth_token_limit": "2/minute",
    "oauth_revoke_limit": "2/minute",
}


@asynccontextmanager
async def app_at(url: str, redis: dict[str, str] | None = None) -> AsyncIterator[Any]:
    settings = Settings(
        database=DatabaseSettings(url=url),
        environment="test",
        site={"public_url": BASE},
        auth={"allow_anonymous": False} | TIGHT,
        redis=redis or {},
        _env_file=None,
    )
    app = create_app(settings, build_server, stateless=True, json_response=True)
    async with app.router.lifespan_context(app):
        yield app


def client_of(app: Any, address: str) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, client=(address, 40000))
    return httpx2.AsyncClient(transport=transport, base_url=BASE)


async def register(http: httpx2.AsyncClient) -> httpx2.Response:
    return await http.post(
        "/oauth/register",
        json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"},
    )


def assert_limited(response: httpx2.Response, endpoint: str) -> None:
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 60
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert f"Too many {endpoint} requests" in body["error_description"]
    assert f"try again in {wait} seconds" in body["error_description"]


async def clients_stored(url: str) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(OAuthClient)) or 0)
    finally:
        await engine.dispose()


async def test_each_endpoint_answers_429_over_its_limit_per_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/limits.db"
    async with app_at(url) as app, client_of(app, "198.51.100.7") as http:
        assert (await register(http)).status_code == 201
        assert (await register(http)).status_code == 201
        caplog.set_level(logging.WARNING, "kamiyo.web.oauth_limits")
        assert_limited(await register(http), "register")
        assert "OAuth register limit (2 per 1 minute) reached" in caplog.text
        assert await clients_stored(url) == 2  # the refused one was not read, nor stored
        # A browser client reads the answer: CORS still applies.
        cors = await http.post(
            "/oauth/register", json={}, headers={"Origin": "http://localhost:6274"}
        )
        assert cors.status_code == 429
        assert cors.headers["access-control-allow-origin"] == "*"
        assert "retry-after" in cors.headers["access-control-expose-headers"].lower()
        preflight = await http.options(
            "/oauth/register",
            headers={"Origin": "http://x", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200  # preflights are not counted nor refused

        form = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "nobody"}
        for _ in range(2):
            assert (await http.post("/oauth/token", data=form)).status_code == 401
        assert_limited(await http.post("/oauth/token", data=form), "token")
        for _ in range(2):
            assert (await http.post("/oauth/revoke", data={"token": "x"})).status_code == 401
        assert_limited(await http.post("/oauth/revoke", data={"token": "x"}), "revoke")
        query = {"client_id": "nobody", "code_challenge": pkce()[1], "response_type": "code"}
        for _ in range(2):
            assert (await http.get("/oauth/authorize", params=query)).status_code == 400
        assert_limited(await http.get("/oauth/authorize", params=query), "authorize")
        # One line for the flood, not one per refusal (the rest are counted for a summary).
        lines = [r for r in caplog.records if r.getMessage().startswith("429 on ")]
        assert len(lines) == 1
        # Discovery is never limited.
        assert (await http.get("/.well-known/oauth-authorization-server")).status_code == 200

        # Another address has its own count.
        async with client_of(app, "203.0.113.5") as other:
            assert (await register(other)).status_code == 201


async def test_instances_sharing_redis_share_the_count(
    tmp_path: Path, redis_settings: dict[str, str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    async with app_at(url, redis_settings) as first, app_at(url, redis_settings) as second:
        async with client_of(first, "198.51.100.8") as a, client_of(second, "198.51.100.8") as b:
            assert (await register(a)).status_code == 201
            assert (await register(b)).status_code == 201
            assert_limited(await register(a), "register")
            assert_limited(await register(b), "register")
        async with client_of(second, "198.51.100.9") as elsewhere:
            assert (await register(elsewhere)).status_code == 201
    assert await clients_stored(url) == 3


@pytest.mark.parametrize("bad", ["lots", "0/minute", "10/fortnight"])
def test_a_limit_that_is_not_one_stops_the_start(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not a rate limit"):
        Settings(auth={"oauth_token_limit": bad}, _env_file=None)

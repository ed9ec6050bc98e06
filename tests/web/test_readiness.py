"""``/readyz``: each check named, 503 naming the failing ones, cached, and nothing secret."""

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text

from kamiyo.config import DatabaseSettings, RedisSettings, Settings, SourceSettings
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.tables import SourceState
from kamiyo.mcpserver.server import build_server
from kamiyo.runtime import Runtime
from kamiyo.web import readiness
from kamiyo.web.app import create_app
from kamiyo.web.readiness import Readiness
from tests.private_services import private_redis

pytestmark = pytest.mark.anyio


def _settings(url: str, **sections: object) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url), environment="test", _env_file=None, **sections
    )


@pytest.fixture
async def runtime(empty_database_url: str) -> AsyncIterator[Runtime]:
    """A migrated database of each backend, without the bundled data (quick to make)."""
    engine = create_engine(empty_database_url)
    try:
        await migrate.upgrade(engine)
        yield Runtime(_settings(empty_database_url), engine, session_factory(engine))
    finally:
        await engine.dispose()


@pytest.fixture(autouse=True)
def _short_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "CACHE_S", 0.2)


async def _wait_past_cache() -> None:
    await asyncio.sleep(readiness.CACHE_S + 0.05)


async def test_the_route_answers_ready_with_every_check_named(loaded_runtime: Runtime) -> None:
    # The shared loaded store: the app finds it ready and starts without loading anything.
    url = loaded_runtime.engine.url.render_as_string(hide_password=False)
    app = create_app(_settings(url), build_server)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["failing"] == []
    checks = body["checks"]
    assert set(checks) == {"database", "redis", "migrations", "data_freshness"}
    assert checks["database"]["status"] == "ok"
    assert checks["redis"] == {"status": "skipped", "reason": "KAMIYO_REDIS_URL is not set"}
    assert checks["migrations"]["current"] == checks["migrations"]["head"]
    assert checks["migrations"]["head"] == migrate.HEAD_REVISION
    # The bundled load is not a refresh: the age is unknown, and unbounded it does not fail.
    assert checks["data_freshness"]["last_refresh"] is None
    assert checks["data_freshness"]["status"] == "ok"
    # Nothing about where the database lives (the URL may carry a password).
    assert "sqlite" not in response.text
    assert "postgres" not in response.text


async def test_an_old_schema_is_named_and_cached_until_the_next_evaluation(
    runtime: Runtime,
) -> None:
    ready = Readiness(runtime.settings, lambda: runtime)
    assert (await ready.verdict()).ready
    async with runtime.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert (await ready.verdict()).ready  # the cached answer: polls do not reach the database
    await _wait_past_cache()
    verdict = await ready.verdict()
    assert verdict.failing == ["migrations"]
    body = verdict.body()
    assert body["status"] == "not_ready"
    assert body["checks"]["migrations"]["current"] == "0001"
    response = await ready.endpoint(None)  # type: ignore[arg-type]  # the request is unused
    assert response.status_code == 503
    assert json.loads(bytes(response.body))["failing"] == ["migrations"]
    # A newer schema is an upgrade under way: this old instance keeps serving meanwhile.
    async with runtime.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    await _wait_past_cache()
    upgrading = await ready.verdict()
    assert upgrading.ready
    assert "replace it with the new one" in upgrading.checks["migrations"].detail["note"]
    ready.stopping()  # serving has begun to stop: the proxy must send nothing new
    assert (await ready.verdict()).body()["failing"] == ["shutdown"]


async def test_data_freshness_against_the_bound(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(
        update={"sources": SourceSettings(_env_file=None, stale_after="1h")}
    )
    ready = Readiness(settings, lambda: runtime)
    never = await ready.verdict()
    assert never.failing == ["data_freshness"]
    assert "kamiyo ingest" in never.checks["data_freshness"].detail["reason"]
    async with runtime.sessions() as session:
        session.add(
            SourceState(
                name="rekt", last_success_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
            )
        )
        await session.commit()
    await _wait_past_cache()
    fresh = await ready.verdict()
    assert fresh.ready
    assert 250 < fresh.checks["data_freshness"].detail["age_s"] < 400
    assert fresh.checks["data_freshness"].detail["stale_after_s"] == 3600
    async with runtime.sessions() as session:
        state = await session.get(SourceState, "rekt")
        assert state is not None
        state.last_success_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        await session.commit()
    await _wait_past_cache()
    assert (await ready.verdict()).failing == ["data_freshness"]


async def test_a_redis_that_goes_down_is_named(runtime: Runtime, tmp_path: Path) -> None:
    with private_redis(tmp_path) as server:
        settings = runtime.settings.model_copy(
            update={"redis": RedisSettings(_env_file=None, url=server.url)}
        )
        ready = Readiness(settings, lambda: runtime)
        try:
            up = await ready.verdict()
            assert up.ready
            assert up.checks["redis"].status == "ok"
            server.kill()  # by pid: our own redis-server, never the shared one
            await _wait_past_cache()
            down = await ready.verdict()
            assert down.failing == ["redis"]
            assert down.checks["redis"].detail["error"]  # named by type: ConnectionError
            assert str(server.port) not in json.dumps(down.body())
            server.start()  # back on the same port: ready again without a restart
            await _wait_past_cache()
            assert (await ready.verdict()).ready
        finally:
            await ready.aclose()


async def test_an_unreachable_database_skips_what_needs_it() -> None:
    def not_open() -> Runtime:
        raise RuntimeError("the server was used before its runtime was opened")

    verdict = await Readiness(Settings(_env_file=None), not_open).verdict()
    assert verdict.failing == ["database"]
    assert verdict.checks["database"].detail == {"error": "RuntimeError"}
    assert verdict.checks["migrations"].status == "skipped"

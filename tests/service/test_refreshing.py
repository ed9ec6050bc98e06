"""A serving instance stays current: scheduled refreshes, and answers dropped on new data."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kamiyo import intel
from kamiyo.access.gate import OpenGate
from kamiyo.cli import app
from kamiyo.config import DatabaseSettings, Settings, SourceSettings
from kamiyo.runtime import Runtime, open_runtime
from kamiyo.service import refreshing
from kamiyo.service.state import ServerState
from tests.intel.feed_server import FeedServer

pytestmark = pytest.mark.anyio

REKT = Path(__file__).parents[1] / "fixtures" / "sources" / "rekt" / "feed.reconstructed.xml"


@pytest.fixture
async def runtime(empty_database_url: str, feed_server: FeedServer) -> AsyncIterator[Runtime]:
    settings = Settings(
        database=DatabaseSettings(url=empty_database_url),
        sources=SourceSettings(
            urls={"rekt": feed_server.url("/rekt.xml")},
            disabled=[
                "defihacklabs",
                "defillama",
                "defillama_protocols",
                "slowmist",
                "web3isgoinggreat",
                "notable",
                "ofac",
            ],
            allow_private=True,
            min_interval_s=0,
            refresh_every=0.05,
        ),
        _env_file=None,
    )
    async with open_runtime(settings, upgrade=True) as opened:
        yield opened


async def test_new_data_clears_cached_answers_and_becomes_searchable(
    runtime: Runtime, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refreshing, "WATCH_EVERY_S", 0.05)
    state = ServerState(settings=runtime.settings, gate=OpenGate(100))
    assert state.cache is not None
    state.cache["some answer"] = object()  # type: ignore[assignment]
    changed = asyncio.Event()

    def on_change() -> None:
        changed.set()
        state.data_changed()

    async with refreshing.keeping_current(runtime, on_change):
        await asyncio.sleep(0.3)
        assert not changed.is_set()  # the feed answers 404 so far: nothing changed
        assert "some answer" in state.cache
        feed_server.serve("/rekt.xml", REKT.read_bytes(), content_type="application/rss+xml")
        async with asyncio.timeout(20):
            await changed.wait()
        assert "some answer" not in state.cache
    async with runtime.sessions() as session:
        found = await intel.search_incidents(session, intel.SearchQuery(query="rekt"))
        assert (
            found.count >= 1
            or (await intel.search_incidents(session, intel.SearchQuery(query="drift"))).count >= 1
        )


def test_worker_refuses_a_bad_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMIYO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/k.db")
    result = CliRunner().invoke(app, ["worker", "--every", "soon"])
    assert result.exit_code == 2
    assert "--every: is not a duration" in result.stderr
    result = CliRunner().invoke(app, ["serve", "--refresh-every", "never"])
    assert result.exit_code == 2
    assert "--refresh-every: is not a duration" in result.stderr

"""``kamiyo ingest`` end to end: every source served by a real HTTP server on loopback.

The server serves each source's recorded format (tests/fixtures/sources), then a changed
second version, and the faults a live feed has: 429 with Retry-After, 500s, a truncated body,
a changed HTML layout, an empty document. Each run's per-source summary is checked, and that
a failing source loses nothing already stored.
"""

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from kamiyo import intel
from kamiyo.cli import app
from kamiyo.config import DatabaseSettings, Settings, SourceSettings
from kamiyo.db.tables import Dataset, Incident, SourceReportRow, SourceState
from kamiyo.intel.bundled import ensure_bundled
from kamiyo.intel.refresh import SourceRun
from kamiyo.intel.sources import defihacklabs
from kamiyo.runtime import Runtime, open_runtime
from kamiyo.service.refreshing import refresh, select_adapters
from tests.intel.feed_server import FeedServer, Reply

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sources"
LIVE = ("defihacklabs", "defillama", "defillama_protocols", "slowmist", "rekt", "web3isgoinggreat")
PATHS = {
    "defihacklabs": "/dfhl",
    "defillama": "/llama/hacks",
    "defillama_protocols": "/llama/protocols",
    "slowmist": "/slowmist/",
    "rekt": "/rekt/feed.xml",
    "web3isgoinggreat": "/w3igg/feed.xml",
}
POCS = {
    "src/test/2026-08/FlashstakeV2_exp.sol": "FlashstakeV2_exp",
    "src/test/2024-12/Bizness_exp.sol": "Bizness_exp",
    "src/test/2024-12/Moonhacker_exp.sol": "Moonhacker_exp",
}


def fixture(source: str, name: str) -> bytes:
    return (FIXTURES / source / name).read_bytes()


def serve_everything(server: FeedServer) -> None:
    readme = fixture("defihacklabs", "README.excerpt.md").decode()
    for year in ("2025", "2021"):
        readme = readme.replace(f"past/{year}/README.md", "past/2024/README.md")
    server.serve("/dfhl/README.md", readme.encode(), etag='"readme-1"')
    server.serve(
        "/dfhl/past/2024/README.md", fixture("defihacklabs", "past_2024_README.excerpt.md")
    )
    for path, header in POCS.items():
        server.serve(f"/dfhl/{path}", fixture("defihacklabs", f"poc_headers/{header}.header.txt"))
    server.serve("/llama/hacks", fixture("defillama", "hacks.reconstructed.json"), etag='"hacks-1"')
    server.serve("/llama/protocols", fixture("defillama", "protocols.reconstructed.json"))
    server.serve("/slowmist/", fixture("slowmist", "hacked_list_page.reconstructed.html"))
    server.serve(
        "/rekt/feed.xml",
        fixture("rekt", "feed.reconstructed.xml"),
        last_modified="Mon, 30 Nov 2026 10:00:00 GMT",
    )
    server.serve("/w3igg/feed.xml", fixture("web3isgoinggreat", "feed.atom.reconstructed.xml"))


def settings_for(url: str, server: FeedServer) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        sources=SourceSettings(
            urls={name: server.url(path) for name, path in PATHS.items()},
            allow_private=True,
            min_interval_s=0,
            backoff_s=0,
            attempts=3,
        ),
        _env_file=None,
    )


@pytest.fixture
async def runtime(empty_database_url: str, feed_server: FeedServer) -> AsyncIterator[Runtime]:
    serve_everything(feed_server)
    async with open_runtime(settings_for(empty_database_url, feed_server), upgrade=True) as rt:
        yield rt


async def run_all(runtime: Runtime) -> dict[str, SourceRun]:
    adapters = select_adapters(runtime.settings.sources, LIVE)
    return {r.name: r for r in await refresh(runtime, adapters)}


async def stored(runtime: Runtime) -> tuple[int, int]:
    async with runtime.sessions() as session:
        reports = await session.scalar(select(func.count(SourceReportRow.pk))) or 0
        incidents = await session.scalar(select(func.count(Incident.pk))) or 0
    return reports, incidents


async def test_a_run_adds_and_merges_and_a_second_run_changes_nothing(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    before = await stored(runtime)
    first = await run_all(runtime)
    assert {name: r.error for name, r in first.items()} == dict.fromkeys(LIVE)
    # DeFiHackLabs' sections are the bundled ones: nothing new, nothing changed for the 12
    # sections with no PoC here (the bundle's report stands), the 3 with one re-read.
    dfhl = first["defihacklabs"].counts
    assert dfhl.new == 0
    assert dfhl.merged == 0
    assert first["defillama_protocols"].protocols == 3
    for name in ("defillama", "slowmist", "rekt", "web3isgoinggreat"):
        counts = first[name].counts
        assert counts.new + counts.merged >= 1, name
        assert counts.failed == 0, name
    added = sum(r.counts.new + r.counts.merged for r in first.values())
    after = await stored(runtime)
    assert after[0] == before[0] + added
    assert after[1] == before[1] + sum(r.counts.new for r in first.values())

    second = await run_all(runtime)
    assert {
        n: (r.counts.new, r.counts.merged, r.counts.updated) for n, r in second.items()
    } == dict.fromkeys(LIVE, (0, 0, 0))
    assert await stored(runtime) == after
    # Conditional requests: the ETag and Last-Modified of the first run were sent back.
    assert feed_server.requests_to("/llama/hacks")[-1].header("if-none-match") == '"hacks-1"'
    assert feed_server.requests_to("/rekt/feed.xml")[-1].header("if-modified-since")
    async with runtime.sessions() as session:
        state = await session.get(SourceState, "rekt")
        assert state is not None
        assert state.last_success_at is not None
        assert state.last_error is None


async def test_a_changed_feed_adds_and_updates(runtime: Runtime, feed_server: FeedServer) -> None:
    await run_all(runtime)
    hacks = json.loads(fixture("defillama", "hacks.reconstructed.json"))
    hacks[0]["amount"] = hacks[0]["amount"] * 2  # a revised figure
    hacks.append({**hacks[1], "name": "Brand New Lender", "date": hacks[1]["date"] + 86400 * 40})
    feed_server.serve("/llama/hacks", json.dumps(hacks).encode(), etag='"hacks-2"')
    runs = await run_all(runtime)
    counts = runs["defillama"].counts
    assert (counts.new, counts.updated) == (1, 1)
    async with runtime.sessions() as session:
        found = await intel.search_incidents(session, intel.SearchQuery(query="brand new lender"))
        assert [i.protocol for i in found.incidents] == ["Brand New Lender"]


async def test_faults_fail_their_source_alone_and_lose_nothing(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    await run_all(runtime)
    kept = await stored(runtime)
    feed_server.script("/llama/hacks", [Reply(429, headers={"Retry-After": "0"}), 500, 200])
    feed_server.serve("/llama/hacks", fixture("defillama", "hacks.reconstructed.json"))
    feed_server.script("/llama/protocols", [500])  # 500 forever
    feed_server.truncated("/rekt/feed.xml", fixture("rekt", "feed.reconstructed.xml"), sent=200)
    feed_server.serve("/slowmist/", b"<html><body><div class='other'>moved</div></body></html>")
    feed_server.serve("/w3igg/feed.xml", b"")
    runs = await run_all(runtime)
    assert runs["defillama"].error is None  # retried after the 429
    assert runs["defihacklabs"].error is None
    for name in ("defillama_protocols", "rekt", "slowmist", "web3isgoinggreat"):
        assert runs[name].error, name
    assert "500" in (runs["defillama_protocols"].error or "")
    assert "truncated" in (runs["rekt"].error or "")
    assert await stored(runtime) == kept
    async with runtime.sessions() as session:
        state = await session.get(SourceState, "slowmist")
        assert state is not None
        assert state.last_error == runs["slowmist"].error
        assert state.last_success_at is not None  # the first run's success is remembered


async def test_a_feed_that_empties_is_an_error_not_no_incidents(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    await run_all(runtime)
    feed_server.serve(
        "/rekt/feed.xml",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>rekt</title></channel></rss>',
    )
    runs = await run_all(runtime)
    assert "found no items where the last good run found" in (runs["rekt"].error or "")


def test_the_command_prints_a_summary_and_json(
    feed_server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_everything(feed_server)
    monkeypatch.setenv("KAMIYO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/k.db")
    monkeypatch.setenv(
        "KAMIYO_SOURCES_URLS", json.dumps({n: feed_server.url(p) for n, p in PATHS.items()})
    )
    monkeypatch.setenv("KAMIYO_SOURCES_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("KAMIYO_SOURCES_MIN_INTERVAL_S", "0")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--source", "rekt", "--dry-run", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["dry_run"] is True
    rekt = document["sources"]["rekt"]
    assert set(rekt) >= {"new", "merged", "updated", "unchanged", "failed", "error"}
    assert rekt["new"] + rekt["merged"] == 2
    # The dry run wrote nothing: the real run finds the same two items to add.
    result = runner.invoke(app, ["ingest", "--source", "rekt"])
    assert result.exit_code == 0, result.stderr
    assert "Ingest summary" in result.stdout
    assert "rekt" in result.stdout
    again = json.loads(runner.invoke(app, ["ingest", "--source", "rekt", "--json"]).stdout)
    assert again["sources"]["rekt"]["unchanged"] + again["sources"]["rekt"]["new"] >= 0
    listed = json.loads(runner.invoke(app, ["sources", "--json"]).stdout)["sources"]
    rekt_row = next(row for row in listed if row["name"] == "rekt")
    assert rekt_row["reports"] == 2
    assert rekt_row["last_success"] is not None
    # --from reads a local file in the source's format; an unknown source is refused.
    local = tmp_path / "hacks.json"
    local.write_bytes(fixture("defillama", "hacks.reconstructed.json"))
    result = runner.invoke(app, ["ingest", "--source", "defillama", "--from", str(local), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sources"]["defillama"]["new"] >= 1
    result = runner.invoke(app, ["ingest", "--source", "nope"])
    assert result.exit_code == 2
    assert "unknown source nope" in result.stderr
    assert defihacklabs.INFO.name in result.stderr


async def test_defihacklabs_rereads_sections_since_a_date_and_the_bundle_keeps_off(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    adapters = select_adapters(runtime.settings.sources, ["defihacklabs"])
    (run,) = await refresh(runtime, adapters, since=dt.date(2024, 12, 1))
    assert run.error is None
    # Sections from December 2024 on are re-read; the three with a PoC here carry more than
    # the CSV extract did (numbered attack contracts, the free-form header's addresses).
    assert run.counts.new == 0
    assert run.counts.updated >= 2
    assert run.counts.failed >= 1  # sections whose PoC this server does not have
    async with runtime.sessions() as session:
        origins = dict(
            (
                await session.execute(
                    select(SourceReportRow.source_id, SourceReportRow.origin).where(
                        SourceReportRow.source == "defihacklabs"
                    )
                )
            ).all()
        )
        assert origins["20241223_moonhacker"] == "live"
        # A bundle load (here: forced by forgetting it was loaded) leaves the live report.
        await session.execute(delete(Dataset))
        await session.commit()
        await ensure_bundled(session)
        row = await session.scalar(
            select(SourceReportRow).where(SourceReportRow.source_id == "20241223_moonhacker")
        )
        assert row is not None
        assert row.origin == "live"


async def test_two_concurrent_ingests_take_turns(runtime: Runtime) -> None:
    adapters = select_adapters(runtime.settings.sources, ["rekt", "defillama"])
    before = await stored(runtime)
    one, two = await asyncio.gather(refresh(runtime, adapters), refresh(runtime, adapters))
    added = [sum(r.counts.new + r.counts.merged for r in run) for run in (one, two)]
    # One run did the work, the other waited for the lock and found it done.
    assert sorted(added)[0] == 0
    assert sorted(added)[1] >= 3
    after = await stored(runtime)
    assert after[0] == before[0] + sorted(added)[1]

"""The sanctions list end to end: loaded once from the package, replaced by ``kamiyo ingest
--source ofac`` from a real HTTP server on loopback serving the published files, and left as it
was by a failed, truncated or odd fetch. Both backends."""

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from kamiyo.cli import app
from kamiyo.config import DatabaseSettings, Settings, SourceSettings
from kamiyo.db.sanctions import SanctionedAddress
from kamiyo.db.tables import Dataset, SourceState
from kamiyo.intel.sanctions import SNAPSHOT_PATH, build_snapshot, ensure_snapshot
from kamiyo.intel.screening import screen_address
from kamiyo.intel.screening_models import AddressScreenQuery, Verdict
from kamiyo.intel.sources import ofac
from kamiyo.runtime import Runtime, open_runtime
from kamiyo.service.refreshing import refresh, select_adapters
from tests.intel.feed_server import FeedServer, Reply

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parents[2] / "data" / "ofac"
RONIN_ATTACKER = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"
NEW_ADDRESS = "0x" + "7e" * 20  # not on the 2024 list
BITCOIN_ALSO_USDT = "1CF46Rfbp97absrs7zb7dFfZS6qBXUm9EP"  # on the XBT and USDT (Omni) lists


def published(asset: str) -> bytes:
    return (DATA / ofac.file_name(asset)).read_bytes()


def serve(
    server: FeedServer, changed: dict[str, bytes] | None = None, *, etags: bool = True
) -> None:
    for asset in ofac.ASSETS:
        body = (changed or {}).get(asset, published(asset))
        etag = f'"{asset}-{hash(body) & 0xFFFF:x}"' if etags else None
        server.serve(f"/ofac/{ofac.file_name(asset)}", body, content_type="text/plain", etag=etag)


def settings_for(url: str, server: FeedServer) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        sources=SourceSettings(
            urls={"ofac": server.url("/ofac")}, allow_private=True, min_interval_s=0, backoff_s=0
        ),
        _env_file=None,
    )


@pytest.fixture
async def runtime(empty_database_url: str, feed_server: FeedServer) -> AsyncIterator[Runtime]:
    serve(feed_server)
    async with open_runtime(settings_for(empty_database_url, feed_server), upgrade=True) as rt:
        yield rt


async def held(runtime: Runtime) -> dict[str, tuple[list[str], str, dt.date]]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(SanctionedAddress))
        return {r.address: (r.assets, r.origin, r.list_date) for r in rows}


async def ingest(runtime: Runtime) -> tuple[int, int, int, int, str | None]:
    (run,) = await refresh(runtime, select_adapters(runtime.settings.sources, ["ofac"]))
    c = run.counts
    return c.new, c.updated, run.removed, c.unchanged, run.error


def test_the_shipped_snapshot_is_what_the_repository_data_builds(tmp_path: Path) -> None:
    out = tmp_path / "ofac_sdn.json"
    assert build_snapshot(DATA, out) == 611
    assert out.read_bytes() == SNAPSHOT_PATH.read_bytes(), "stale: run `kamiyo data build`"


async def test_the_first_start_loads_the_package_list_once(
    runtime: Runtime, empty_database_url: str, feed_server: FeedServer
) -> None:
    first = await held(runtime)
    assert len(first) == 611
    assert first[RONIN_ATTACKER] == (["ETH"], "bundle", dt.date(2024, 9, 27))
    assert first[BITCOIN_ALSO_USDT][0] == ["USDT", "XBT"]
    async with open_runtime(settings_for(empty_database_url, feed_server)) as again:
        assert await held(again) == first
        async with again.sessions() as session:
            assert await ensure_snapshot(session) is None  # taken in already: nothing done


async def test_a_live_list_replaces_the_stored_one_and_a_second_run_changes_nothing(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    eth = published("ETH").decode()
    lines = [line for line in eth.splitlines() if line.lower() != RONIN_ATTACKER]
    usdc = published("USDC") + b"0x098b716B8Aaf21512996dC57EB0615e2383E2f96\n"
    changed = {"ETH": ("\n".join([*lines, NEW_ADDRESS]) + "\n").encode(), "USDC": usdc}
    serve(feed_server, changed)
    new, updated, removed, unchanged, error = await ingest(runtime)
    assert error is None
    # The Ronin attacker moved from the ETH list to the USDC one: its assets changed.
    assert (new, updated, removed, unchanged) == (1, 1, 0, 610)
    stored = await held(runtime)
    today = dt.datetime.now(dt.UTC).date()
    assert stored[RONIN_ATTACKER] == (["USDC"], "live", today)
    assert stored[NEW_ADDRESS] == (["ETH"], "live", today)
    assert {origin for _, origin, _ in stored.values()} == {"live"}
    # A second run: every document answers 304 to the ETag it sent; nothing changes.
    assert await ingest(runtime) == (0, 0, 0, 0, None)
    assert await held(runtime) == stored
    assert feed_server.requests_to(f"/ofac/{ofac.file_name('ETH')}")[-1].header("if-none-match")
    # Without validators the same content parses again, and is unchanged.
    serve(feed_server, changed, etags=False)
    assert await ingest(runtime) == (0, 0, 0, 612, None)
    # USDC back to the published file: the Ronin attacker is off the list, so off the store.
    serve(feed_server, {"ETH": changed["ETH"]})
    assert await ingest(runtime) == (0, 0, 1, 611, None)
    assert RONIN_ATTACKER not in await held(runtime)
    async with runtime.sessions() as session:
        found = await screen_address(session, AddressScreenQuery(wallet_address=RONIN_ATTACKER))
    assert found.verdict is Verdict.BLOCK  # the attacker of an incident still
    assert [m.kind for m in found.direct_matches] == ["incident"]


async def test_an_address_dropped_upstream_is_removed(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    serve(feed_server, {"ARB": b"", "BSC": b""})  # the one ARB and BSC address: also on ETH
    assert await ingest(runtime) == (0, 1, 0, 610, None)
    lines = published("XBT").decode().splitlines()
    serve(feed_server, {"XBT": ("\n".join(lines[1:]) + "\n").encode()}, etags=False)
    # ARB and BSC are back (an update), the first XBT address is gone.
    assert await ingest(runtime) == (0, 1, 1, 609, None)
    assert lines[0] not in await held(runtime)


@pytest.mark.parametrize(
    "fault",
    ["truncated", "server error", "error page", "not found"],
)
async def test_a_failed_fetch_keeps_the_stored_list(
    runtime: Runtime, feed_server: FeedServer, fault: str
) -> None:
    serve(feed_server, {"ETH": published("ETH") + NEW_ADDRESS.encode() + b"\n"})
    assert (await ingest(runtime))[4] is None
    before = await held(runtime)
    path = f"/ofac/{ofac.file_name('XBT')}"
    serve(feed_server, {"ETH": b""}, etags=False)  # would remove the whole ETH list
    if fault == "truncated":
        feed_server.truncated(path, published("XBT"), sent=300)
    elif fault == "server error":
        feed_server.script(path, [500])
    elif fault == "error page":
        feed_server.serve(path, b"<html><body>Too many requests</body></html>\n")
    else:
        feed_server.script(path, [Reply(404, b"404: Not Found")])
    *_, error = await ingest(runtime)
    assert error is not None
    assert "sanctioned_addresses_XBT.txt" in error
    assert await held(runtime) == before


async def test_a_new_package_list_does_not_overwrite_a_newer_live_one(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    serve(feed_server, {"ETH": published("ETH") + NEW_ADDRESS.encode() + b"\n"})
    assert (await ingest(runtime))[4] is None
    live = await held(runtime)
    async with runtime.sessions() as session:
        await session.execute(delete(Dataset).where(Dataset.name == ofac.LIST_NAME))
        await session.commit()
        assert await ensure_snapshot(session) is None  # the live copy is newer: kept
        assert await session.get(Dataset, ofac.LIST_NAME) is not None
        count = await session.scalar(select(func.count(SanctionedAddress.pk)))
    assert count == 612
    assert await held(runtime) == live


async def test_a_newer_package_list_replaces_an_older_live_one_and_its_validators(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    serve(feed_server, {"ETH": published("ETH") + NEW_ADDRESS.encode() + b"\n"})
    assert (await ingest(runtime))[4] is None
    async with runtime.sessions() as session:
        state = await session.get(SourceState, "ofac")
        assert state is not None
        assert state.validators  # the ETags of the live run
        # As if this live copy predated the snapshot a new release ships.
        await session.execute(update(SanctionedAddress).values(list_date=dt.date(2024, 1, 1)))
        await session.execute(delete(Dataset).where(Dataset.name == ofac.LIST_NAME))
        await session.commit()
        change = await ensure_snapshot(session)
        assert change is not None
        assert (change.removed, change.unchanged) == (1, 611)
    stored = await held(runtime)
    assert NEW_ADDRESS not in stored
    assert {origin for _, origin, _ in stored.values()} == {"bundle"}
    async with runtime.sessions() as session:
        state = await session.get(SourceState, "ofac")
        assert state is not None
        assert state.validators == {}  # the next refresh fetches every file in full


def test_the_commands_refresh_and_list_the_source(
    feed_server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(feed_server)
    monkeypatch.setenv("KAMIYO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/k.db")
    monkeypatch.setenv("KAMIYO_SOURCES_URLS", json.dumps({"ofac": feed_server.url("/ofac")}))
    monkeypatch.setenv("KAMIYO_SOURCES_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("KAMIYO_SOURCES_MIN_INTERVAL_S", "0")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--source", "ofac", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["sources"]["ofac"]
    assert (summary["new"], summary["unchanged"], summary["removed"]) == (0, 611, 0)
    listed = json.loads(runner.invoke(app, ["sources", "--json"]).stdout)["sources"]
    row = next(r for r in listed if r["name"] == "ofac")
    assert row["list_entries"] == 611
    assert row["list_date"] == dt.datetime.now(dt.UTC).date().isoformat()
    assert row["bundled"] is True
    assert row["last_success"] is not None
    shown = runner.invoke(app, ["sources"]).stdout
    assert "611 addresses" in shown
    # A copy of the snapshot folder is as old as its snapshot.json says, not as old as today.
    result = runner.invoke(app, ["ingest", "--source", "ofac", "--from", str(DATA), "--json"])
    assert result.exit_code == 0, result.stderr
    listed = json.loads(runner.invoke(app, ["sources", "--json"]).stdout)["sources"]
    assert next(r for r in listed if r["name"] == "ofac")["list_date"] == "2024-09-27"

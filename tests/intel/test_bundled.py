import dataclasses
import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kamiyo import intel
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.tables import Incident
from kamiyo.intel.bundled import BUNDLE_PATH, build_bundle, ensure_bundled, read_bundle
from kamiyo.runtime import open_runtime

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "data" / "defihacklabs"

pytestmark = pytest.mark.anyio


def test_the_shipped_bundle_is_what_the_repository_csvs_build(tmp_path: Path) -> None:
    out = tmp_path / "bundle.json.gz"
    assert build_bundle(SOURCE, out) == 860
    assert out.read_bytes() == BUNDLE_PATH.read_bytes(), (
        "the bundled dataset is stale: run `kamiyo data build`"
    )


def test_bundle_contents() -> None:
    _, records = read_bundle()
    assert len(records) == 860
    assert sum(len(r.addresses) for r in records) >= 1917
    document = json.loads(gzip.decompress(BUNDLE_PATH.read_bytes()))
    assert "DeFiHackLabs" in document["attribution"]


async def test_loading_is_done_once_and_redone_when_the_bundle_changes(
    empty_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database=DatabaseSettings(url=empty_database_url), _env_file=None)
    async with open_runtime(settings, upgrade=True) as runtime:
        async with runtime.sessions() as session:
            assert await ensure_bundled(session) is None  # open_runtime loaded it already
            assert await session.scalar(select(func.count(Incident.pk))) == 860

        # A newer bundle without one incident and with one changed.
        _, records = read_bundle()
        kept = [r for r in records if r.id != "20220329_ronin-network"]
        kept = [
            r.model_copy(update={"protocol": "Euler Finance v1"})
            if r.id == "20230313_eulerfinance"
            else r
            for r in kept
        ]
        document = {"incidents": [r.model_dump(mode="json") for r in kept]}
        newer = tmp_path / "newer.json.gz"
        newer.write_bytes(gzip.compress(json.dumps(document).encode()))
        async with runtime.sessions() as session:
            report = await ensure_bundled(session, newer)
            assert report is not None
            assert dataclasses.astuple(report)[1:3] == (859, 1)
            assert await session.scalar(select(func.count(Incident.pk))) == 859
            assert await intel.get_incident(session, "20220329_ronin-network") is None
            found = await intel.search_incidents(session, intel.SearchQuery(query="ronin"))
            assert found.incidents == []
            euler = await intel.search_incidents(session, intel.SearchQuery(query="euler v1"))
            assert [i.protocol for i in euler.incidents] == ["Euler Finance v1"]

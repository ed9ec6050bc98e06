import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.tables import Incident, SourceReportRow
from kamiyo.intel.bundled import BUNDLE_PATH, build_bundle, ensure_bundled, read_bundle
from kamiyo.intel.store import Store
from kamiyo.runtime import open_runtime

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


def test_the_shipped_bundle_is_what_the_repository_data_builds(tmp_path: Path) -> None:
    out = tmp_path / "bundle.json.gz"
    assert build_bundle(REPO / "data", out) == {"defihacklabs": 860, "notable": 231}
    assert out.read_bytes() == BUNDLE_PATH.read_bytes(), (
        "the bundled dataset is stale: run `kamiyo data build`"
    )


def test_bundle_contents() -> None:
    _, sources = read_bundle()
    assert list(sources) == ["defihacklabs", "notable"]
    assert sum(len(r.addresses) for r in sources["defihacklabs"]) >= 1917
    document = json.loads(gzip.decompress(BUNDLE_PATH.read_bytes()))
    attributions = [s["attribution"] for s in document["sources"]]
    assert "DeFiHackLabs" in attributions[0]


@pytest.mark.parametrize(
    ("incident_id", "sources"),
    [
        ("20230313_eulerfinance", {"defihacklabs", "notable"}),
        ("20220329_ronin-network", {"defihacklabs", "notable"}),
        ("20220802_nomad-bridge", {"defihacklabs", "notable"}),
        ("20220416_beanstalkfarms", {"defihacklabs", "notable"}),
    ],
)
async def test_famous_incidents_appear_once_with_all_their_sources(
    session: AsyncSession, incident_id: str, sources: set[str]
) -> None:
    incident = await intel.get_incident(session, incident_id)
    assert incident is not None
    assert {s.source for s in incident.sources} == sources
    # No second incident of the same name within a month.
    same_name = await session.scalars(
        select(Incident.id).where(
            Incident.protocol == incident.protocol,
            func.abs(func.julianday(Incident.date) - func.julianday(incident.date)) < 30
            if session.get_bind().dialect.name == "sqlite"
            else func.abs(Incident.date - incident.date) < 30,
        )
    )
    assert list(same_name) == [incident_id]


async def test_the_ronin_incident_takes_its_date_and_type_from_the_best_report(
    session: AsyncSession,
) -> None:
    ronin = await intel.get_incident(session, "20220329_ronin-network")
    assert ronin is not None
    # Drained on the 23rd, disclosed on the 29th (the date DeFiHackLabs lists).
    assert str(ronin.date) == "2022-03-23"
    assert str(ronin.disclosed) == "2022-03-29"
    assert ronin.attack_type.value == "key_compromise"
    assert "Axie Infinity" in ronin.aliases


async def test_loading_is_done_once_and_never_removes_what_a_new_bundle_lacks(
    empty_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database=DatabaseSettings(url=empty_database_url), _env_file=None)
    async with open_runtime(settings, upgrade=True) as runtime:
        async with runtime.sessions() as session:
            assert await ensure_bundled(session) is None  # open_runtime loaded it already
            incidents = await session.scalar(select(func.count(Incident.pk))) or 0
            reports = await session.scalar(select(func.count(SourceReportRow.pk)))
            assert reports == 860 + 231
            # A live run added an incident the bundle does not know.
            store = await Store.load(session)
            _, sources = read_bundle()
            euler = next(
                r for r in sources["defihacklabs"] if r.source_id == "20230313_eulerfinance"
            )
            live = euler.model_copy(
                update={
                    "source": "rekt",
                    "source_id": "new-one",
                    "protocol": "Brand New DEX",
                    "transactions": [],
                    "addresses": [],
                    "references": [],
                }
            )
            await store.ingest(session, [live], origin="live")
            await session.commit()

        # A newer bundle without Ronin's DeFiHackLabs report and with Euler's changed.
        document = json.loads(gzip.decompress(BUNDLE_PATH.read_bytes()))
        dfhl = document["sources"][0]["reports"]
        dfhl[:] = [r for r in dfhl if r["source_id"] != "20220329_ronin-network"]
        for r in dfhl:
            if r["source_id"] == "20230313_eulerfinance":
                r["loss_text"] = "$197M (revised)"
        newer = tmp_path / "newer.json.gz"
        newer.write_bytes(gzip.compress(json.dumps(document).encode()))
        async with runtime.sessions() as session:
            report = await ensure_bundled(session, newer)
            assert report is not None
            assert report.counts["defihacklabs"].updated == 1
            assert report.counts["defihacklabs"].unchanged == 858
            # Nothing was deleted: Ronin, the live incident and every report are still there.
            assert await session.scalar(select(func.count(Incident.pk))) == incidents + 1
            assert await intel.get_incident(session, "20220329_ronin-network") is not None
            found = await intel.search_incidents(session, intel.SearchQuery(query="brand new"))
            assert [i.protocol for i in found.incidents] == ["Brand New DEX"]

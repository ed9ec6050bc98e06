"""The reports shipped inside the package, and keeping a database in step with them.

The bundle holds every report of the bundled sources (DeFiHackLabs and the notable-incidents
table), so the offline default is multi-source and entity resolution runs on real pairs from
the first start. ``kamiyo data build`` makes it from the repository's ``data/`` folder; the
same inputs always give the same bytes. Loading a changed bundle goes through the same ingest
path as a live run, and deletes nothing: reports a live run or an import wrote stay as they
are, and incidents the bundle no longer lists stay too.
"""

import asyncio
import datetime as dt
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Dataset, Incident
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources import defihacklabs, notable
from kamiyo.intel.sources.base import SourceInfo
from kamiyo.intel.store import Counts, Store

BUNDLE_PATH = Path(__file__).parent / "data" / "bundle.json.gz"
DATASET = "bundle"
# The bundled sources, in load order: the order decides which report starts an incident, and
# so the incident's id (DeFiHackLabs ids such as 20230313_eulerfinance are the ones users know).
BUNDLED: tuple[SourceInfo, ...] = (defihacklabs.INFO, notable.INFO)
DISTINCT_SOURCES = frozenset(info.name for info in BUNDLED if info.distinct_items)
_reports = TypeAdapter(list[SourceReport])


@dataclass(frozen=True)
class LoadReport:
    dataset: str
    incidents: int
    counts: dict[str, Counts]
    sha256: str


def read_sources(data_folder: Path) -> dict[str, list[SourceReport]]:
    """Every bundled source's reports from the repository's ``data/`` folder."""
    return {
        defihacklabs.INFO.name: defihacklabs.read_reports(data_folder / "defihacklabs"),
        notable.INFO.name: notable.read_reports(data_folder / "notable" / notable.FILE),
    }


def build_bundle(
    data_folder: Path,
    out: Path = BUNDLE_PATH,
    *,
    defihacklabs_reports: list[SourceReport] | None = None,
) -> dict[str, int]:
    """Write the compressed bundle of ``data_folder``'s sources; returns reports per source.

    ``defihacklabs_reports`` replaces the CSV extract with reports read from upstream's own
    files (``kamiyo data build --upstream``).
    """
    reports = read_sources(data_folder)
    if defihacklabs_reports is not None:
        reports[defihacklabs.INFO.name] = defihacklabs_reports
    document = {
        "format": 2,
        "sources": [
            {
                "name": info.name,
                "attribution": info.attribution,
                "licence": info.licence,
                "reports": [
                    r.model_dump(mode="json", exclude_defaults=True)
                    for r in sorted(reports[info.name], key=lambda r: r.source_id)
                ],
            }
            for info in BUNDLED
        ],
    }
    payload = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and no file name in the header: identical inputs give identical bytes.
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as handle,
    ):
        handle.write(payload.encode("utf-8"))
    return {name: len(items) for name, items in reports.items()}


def read_bundle(path: Path = BUNDLE_PATH) -> tuple[str, dict[str, list[SourceReport]]]:
    """The bundle's sha256 and its reports per source, in load order."""
    blob = path.read_bytes()
    document = json.loads(gzip.decompress(blob))
    sources = {s["name"]: _reports.validate_python(s["reports"]) for s in document["sources"]}
    return hashlib.sha256(blob).hexdigest(), sources


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def bundled_is_loaded(session: AsyncSession, path: Path = BUNDLE_PATH) -> bool:
    """Whether the database holds exactly this bundle."""
    loaded = await session.get(Dataset, DATASET)
    return loaded is not None and loaded.sha256 == await asyncio.to_thread(_sha256, path)


async def ensure_bundled(session: AsyncSession, path: Path = BUNDLE_PATH) -> LoadReport | None:
    """Load the bundle unless this exact one is loaded already; None when nothing changed."""
    if await bundled_is_loaded(session, path):
        return None
    sha256, sources = await asyncio.to_thread(read_bundle, path)
    now = dt.datetime.now(dt.UTC)
    store = await Store.load(session, distinct_sources=DISTINCT_SOURCES)
    counts = {
        name: await store.ingest(session, reports, origin="bundle", now=now)
        for name, reports in sources.items()
    }
    incidents = await session.scalar(select(func.count(Incident.pk))) or 0
    await session.merge(Dataset(name=DATASET, sha256=sha256, incidents=incidents, loaded_at=now))
    await session.commit()
    return LoadReport(DATASET, incidents, counts, sha256)

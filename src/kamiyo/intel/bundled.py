"""The incident snapshot shipped inside the package, and keeping a database in step with it.

``kamiyo data build`` makes ``data/defihacklabs.json.gz`` from the CSV files in the repository's
``data/defihacklabs/`` folder; the same inputs always give the same bytes.
"""

import asyncio
import datetime as dt
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Dataset, Incident
from kamiyo.intel import fulltext
from kamiyo.intel.ingest import replace_incidents
from kamiyo.intel.models import IncidentRecord
from kamiyo.intel.sources import defihacklabs

BUNDLE_PATH = Path(__file__).parent / "data" / "defihacklabs.json.gz"
_records = TypeAdapter(list[IncidentRecord])


@dataclass(frozen=True)
class LoadReport:
    dataset: str
    incidents: int
    removed: int
    sha256: str


def build_bundle(source_folder: Path, out: Path = BUNDLE_PATH) -> int:
    """Write the compressed snapshot of ``source_folder``'s CSVs; returns the incident count."""
    records = sorted(defihacklabs.read_records(source_folder), key=lambda r: r.id)
    document = {
        "dataset": defihacklabs.NAME,
        "attribution": defihacklabs.ATTRIBUTION,
        "source_commit": defihacklabs.COMMIT,
        "incidents": [r.model_dump(mode="json", exclude_defaults=True) for r in records],
    }
    payload = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    out.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and no file name in the header: identical inputs give identical bytes.
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as handle,
    ):
        handle.write(payload.encode("utf-8"))
    return len(records)


def read_bundle(path: Path = BUNDLE_PATH) -> tuple[str, list[IncidentRecord]]:
    """The snapshot's sha256 and its records."""
    blob = path.read_bytes()
    document = json.loads(gzip.decompress(blob))
    return hashlib.sha256(blob).hexdigest(), _records.validate_python(document["incidents"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def bundled_is_loaded(session: AsyncSession, path: Path = BUNDLE_PATH) -> bool:
    """Whether the database holds exactly this snapshot."""
    loaded = await session.get(Dataset, defihacklabs.NAME)
    return loaded is not None and loaded.sha256 == await asyncio.to_thread(_sha256, path)


async def ensure_bundled(session: AsyncSession, path: Path = BUNDLE_PATH) -> LoadReport | None:
    """Load the snapshot unless this exact one is loaded already; None when nothing changed."""
    if await bundled_is_loaded(session, path):
        return None
    sha256, records = await asyncio.to_thread(read_bundle, path)
    now = dt.datetime.now(dt.UTC)
    count = await replace_incidents(session, records, now=now)
    removed = await _remove_missing(session, {r.id for r in records})
    await session.merge(
        Dataset(name=defihacklabs.NAME, sha256=sha256, incidents=count, loaded_at=now)
    )
    await session.commit()
    return LoadReport(defihacklabs.NAME, count, removed, sha256)


async def _remove_missing(session: AsyncSession, keep: set[str]) -> int:
    """Delete incidents an earlier snapshot brought that this one no longer has."""
    stale = [
        pk
        for pk, incident_id in await session.execute(
            select(Incident.pk, Incident.id)
        )
        if incident_id not in keep
    ]
    if stale:
        await fulltext.delete_documents(session, stale)
        await session.execute(delete(Incident).where(Incident.pk.in_(stale)))
    return len(stale)

"""Sanctions lists in the store: the packaged snapshot, replacing a list whole, looking one up.

The package ships the OFAC SDN digital-currency addresses (``data/ofac_sdn.json``, built by
``kamiyo data build`` from the repository's ``data/ofac``); a new database loads it on first
start, once (the ``datasets`` table remembers which snapshot is loaded). ``kamiyo ingest
--source ofac`` replaces it with the live list. A complete list replaces the stored one:
addresses it no longer holds go, since a delisting is news too. Of two copies the newer wins: a
new release's snapshot does not overwrite a list fetched after that snapshot's date.
"""

import asyncio
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.sanctions import SanctionedAddress
from kamiyo.db.tables import Dataset, SourceState
from kamiyo.intel.sources import ofac
from kamiyo.intel.sources.base import SanctionsList
from kamiyo.intel.store import Origin

SNAPSHOT_PATH = Path(__file__).parent / "data" / "ofac_sdn.json"
_TITLES = {ofac.LIST_NAME: "OFAC SDN digital-currency address list"}


@dataclass
class ListChange:
    """What storing a list did: addresses added, whose assets changed, removed, unchanged."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class HeldList:
    """A list the store holds, as an answer describes it."""

    name: str
    title: str
    date: dt.date
    origin: str
    entries: int


def list_title(name: str) -> str:
    return _TITLES.get(name, name)


def build_snapshot(folder: Path, out: Path = SNAPSHOT_PATH) -> int:
    """Write the packaged snapshot of ``folder`` (``data/ofac``); returns its address count.
    The same files always give the same bytes."""
    listed, lines = ofac.read_folder(folder)
    document = {
        "format": 1,
        "list": listed.name,
        "date": listed.date.isoformat(),
        "attribution": ofac.INFO.attribution,
        "licence": ofac.INFO.licence,
        "assets": lines,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, sort_keys=True, indent=0) + "\n", encoding="utf-8")
    return len(listed.entries)


def read_snapshot(path: Path = SNAPSHOT_PATH) -> tuple[str, SanctionsList]:
    """The snapshot's sha256 and its list."""
    blob = path.read_bytes()
    document = json.loads(blob)
    listed = ofac.from_lines(
        document["list"], dt.date.fromisoformat(document["date"]), document["assets"]
    )
    return hashlib.sha256(blob).hexdigest(), listed


async def store_list(
    session: AsyncSession, listed: SanctionsList, *, origin: Origin, now: dt.datetime
) -> ListChange:
    """Replace the stored list of that name with ``listed`` (not committed)."""
    rows = {
        row.address: row
        for row in await session.scalars(
            select(SanctionedAddress).where(SanctionedAddress.list_name == listed.name)
        )
    }
    wanted = {address: set(assets) for address, assets in listed.entries.items()}
    for asset in listed.unchanged_assets:  # a 304: that asset's addresses are the stored ones
        for address, row in rows.items():
            if asset in row.assets:
                wanted.setdefault(address, set()).add(asset)
    change = ListChange()
    for address, row in rows.items():
        if address not in wanted:
            await session.delete(row)
            change.removed += 1
    for address, assets in wanted.items():
        codes = sorted(assets)
        stored = rows.get(address)
        if stored is None:
            session.add(
                SanctionedAddress(
                    address=address,
                    assets=codes,
                    list_name=listed.name,
                    list_date=listed.date,
                    origin=origin,
                    updated_at=now,
                )
            )
            change.added += 1
            continue
        if stored.assets != codes:
            stored.assets, stored.updated_at = codes, now
            change.updated += 1
        else:
            change.unchanged += 1
        stored.list_date, stored.origin = listed.date, origin  # the whole list's date and copy
    await session.flush()
    return change


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def snapshot_is_loaded(session: AsyncSession, path: Path = SNAPSHOT_PATH) -> bool:
    """Whether the database has taken in exactly this snapshot (loaded, or found older than
    the list it holds)."""
    loaded = await session.get(Dataset, ofac.LIST_NAME)
    return loaded is not None and loaded.sha256 == await asyncio.to_thread(_sha256, path)


async def ensure_snapshot(session: AsyncSession, path: Path = SNAPSHOT_PATH) -> ListChange | None:
    """Load the packaged list unless this snapshot was taken in already or the store holds a
    newer copy; commits. None when the stored list was left as it was."""
    if await snapshot_is_loaded(session, path):
        return None
    sha256, listed = await asyncio.to_thread(read_snapshot, path)
    now = dt.datetime.now(dt.UTC)
    held = (
        await session.execute(
            select(SanctionedAddress.origin, SanctionedAddress.list_date)
            .where(SanctionedAddress.list_name == listed.name)
            .limit(1)
        )
    ).first()
    change = None
    if held is None or held.origin == "bundle" or held.list_date < listed.date:
        change = await store_list(session, listed, origin="bundle", now=now)
        if held is not None and held.origin != "bundle":
            # The fetched copy is gone: its conditional-request validators would answer 304
            # for documents the stored list no longer reflects.
            state = await session.get(SourceState, ofac.INFO.name)
            if state is not None:
                state.validators = {}
    count = await session.scalar(
        select(func.count(SanctionedAddress.pk)).where(SanctionedAddress.list_name == listed.name)
    )
    # ``incidents`` counts what a dataset holds: here, addresses.
    await session.merge(
        Dataset(name=listed.name, sha256=sha256, incidents=count or 0, loaded_at=now)
    )
    await session.commit()
    return change


async def held_lists(session: AsyncSession) -> list[HeldList]:
    """Every list the store holds, with its date, origin and size."""
    rows = await session.execute(
        select(
            SanctionedAddress.list_name,
            func.max(SanctionedAddress.list_date),
            func.max(SanctionedAddress.origin),
            func.count(SanctionedAddress.pk),
        ).group_by(SanctionedAddress.list_name)
    )
    return [
        HeldList(name, list_title(name), date, origin, entries)
        for name, date, origin, entries in rows
    ]


async def listings(session: AsyncSession, address: str) -> list[SanctionedAddress]:
    """The lists that name ``address`` (in its stored form)."""
    found = await session.scalars(
        select(SanctionedAddress)
        .where(SanctionedAddress.address == address)
        .order_by(SanctionedAddress.list_name)
    )
    return list(found)

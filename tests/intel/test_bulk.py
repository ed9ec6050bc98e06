"""The bulk loader writes the rows ingest writes, on both backends."""

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.synthetic import synthetic_records
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.intel.bulk import bulk_load
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Store
from tests.conftest import PostgresDatabases, new_database_url

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
# Every table a load writes, ordered so rows compare one to one (search rows per backend).
TABLES = {
    "incidents": "SELECT * FROM incidents ORDER BY pk",
    "source_reports": "SELECT * FROM source_reports ORDER BY pk",
    "incident_chains": "SELECT * FROM incident_chains ORDER BY incident_pk, chain",
    "incident_addresses": "SELECT * FROM incident_addresses ORDER BY pk",
    "incident_transactions": "SELECT * FROM incident_transactions ORDER BY pk",
    "incident_references": "SELECT * FROM incident_references ORDER BY pk",
    "incident_names": "SELECT * FROM incident_names ORDER BY incident_pk, key",
    "incident_day_stats": "SELECT * FROM incident_day_stats ORDER BY chain, day, attack_type",
    "incident_month_stats": "SELECT * FROM incident_month_stats ORDER BY chain, month, attack_type",
}
SEARCH_ROWS = {
    "sqlite": "SELECT rowid, protocol, attack, body FROM incident_search ORDER BY rowid",
    "postgresql": "SELECT pk, search_vector::text FROM incidents ORDER BY pk",
}


def reports() -> list[SourceReport]:
    """200 synthetic reports, and some that ingest merges: another source's report of the
    same incidents, a report listed twice with a later change; and one more, ingested after."""
    generated, _ = synthetic_records(200, seed=3)
    made = list(generated)
    again = [
        r.model_copy(update={"source": "defihacklabs", "source_id": f"again-{n}"})
        for n, r in enumerate(made[:10])
    ]
    changed = made[20].model_copy(update={"loss_text": "~$5", "loss_usd": 5.0})
    later = made[0].model_copy(update={"source_id": "later", "protocol": "Later Finance"})
    return [*made, *again, changed, later]


async def snapshot(session: AsyncSession, backend: str) -> dict[str, list[Any]]:
    tables = {**TABLES, "search": SEARCH_ROWS[backend]}
    return {name: list(await session.execute(text(sql))) for name, sql in tables.items()}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_bulk_load_writes_what_ingest_writes(
    backend: str, tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    *loaded, later = reports()
    snapshots = []
    for bulk in (False, True):
        engine = create_engine(await new_database_url(backend, tmp_path, postgres_databases))
        try:
            await migrate.upgrade(engine)
            async with session_factory(engine)() as session:
                if bulk:
                    counts = await bulk_load(session, loaded, origin="import", now=NOW)
                else:
                    store = await Store.load(session)
                    counts = await store.ingest(session, loaded, origin="import", now=NOW)
                await session.commit()
                # Ingest goes on after a bulk load (on PostgreSQL: from the pks it gave).
                store = await Store.load(session)
                await store.ingest(session, [later], origin="import", now=NOW)
                await session.commit()
                snapshots.append((counts, await snapshot(session, backend)))
        finally:
            await engine.dispose()
    (ingest_counts, by_ingest), (bulk_counts, by_bulk) = snapshots
    assert bulk_counts.new == ingest_counts.new >= 200 - 1
    assert bulk_counts.merged == ingest_counts.merged >= 10
    assert len(by_ingest["incidents"]) == ingest_counts.new + 1  # and the later one
    for name, rows in by_ingest.items():
        assert by_bulk[name] == rows, name

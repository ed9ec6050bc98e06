"""Loading many new reports at once (benchmark data, a first import of a large feed).

It writes the rows ingest writes (``store.py``): source reports, incidents, their chains,
addresses, transactions, references, names, search documents and the stats totals, resolving
each report against the stored ones and the ones before it exactly as ingest does. What differs
is how: the incidents of a chunk get their pks up front and every table is written with one
executemany per chunk (no ``RETURNING``, no reading back what was just written), and the stats
totals are counted in Python and applied once per chunk. A report whose key is stored already,
or that resolves onto a stored incident, goes through ordinary ingest at the end. A bulk load
announces nothing to the alerts worker: it is history, like the bundle.

The caller owns the transaction, as with ingest.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from itertools import islice

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import Incident, SourceReportRow
from kamiyo.intel import stats_summary
from kamiyo.intel.canonical import canonical
from kamiyo.intel.incident_rows import incident_row, table_of, write_children
from kamiyo.intel.matching import Decision, Entry, entry_for
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Counts, Origin, Store, write_reports

# Reports per chunk: big statements, while SQLite's IN lists and the memory of one chunk's
# derived rows stay small.
CHUNK_SIZE = 10_000

_Added = tuple[Entry, SourceReport, str, Decision | None, Entry | None]


async def bulk_load(
    session: AsyncSession,
    reports: Iterable[SourceReport],
    *,
    origin: Origin,
    now: dt.datetime | None = None,
) -> Counts:
    """Store ``reports`` as ingest would (``Store.ingest``), in big statements."""
    now = now or dt.datetime.now(dt.UTC)
    store = await Store.load(session)
    next_pk = int(await session.scalar(select(func.coalesce(func.max(Incident.pk), 0))) or 0)
    counts = Counts()
    leftover: list[SourceReport] = []
    iterator = iter(reports)
    while chunk := list(islice(iterator, CHUNK_SIZE)):
        next_pk = await _load_chunk(session, store, chunk, origin, now, next_pk, counts, leftover)
    if dialect_name(session) == "postgresql":  # pks were given, not drawn from the sequence
        await session.execute(
            text("SELECT setval(pg_get_serial_sequence('incidents', 'pk'), :pk)"),
            {"pk": max(next_pk, 1)},
        )
    if leftover:
        counts.add(await store.ingest(session, leftover, origin=origin, now=now))
    return counts


async def _load_chunk(
    session: AsyncSession,
    store: Store,
    chunk: list[SourceReport],
    origin: Origin,
    now: dt.datetime,
    next_pk: int,
    counts: Counts,
    leftover: list[SourceReport],
) -> int:
    """Write one chunk's new incidents; put what ingest must handle on ``leftover``; return
    the last pk given."""
    unique = {(r.source, r.source_id): r for r in chunk}  # the later listing wins, as in ingest
    counts.unchanged += len(chunk) - len(unique)
    listed = await session.execute(
        select(SourceReportRow.source, SourceReportRow.source_id)
        .where(SourceReportRow.source.in_({s for s, _ in unique}))
        .where(SourceReportRow.source_id.in_({i for _, i in unique}))
    )
    stored = {(source, source_id) for source, source_id in listed}
    first_new = next_pk  # pks above it are this chunk's incidents, not yet written
    members: dict[int, list[SourceReport]] = defaultdict(list)  # by the pk it will get
    added: list[_Added] = []
    for key, report in unique.items():
        if key in stored:
            leftover.append(report)
            continue
        entry = entry_for(report, 0, store.index.registry)
        match = store.index.resolve(entry)
        if match is not None and match[0].incident <= first_new:
            leftover.append(report)  # onto an incident stored before this chunk
            continue
        if match is None:
            next_pk += 1
            entry.incident = next_pk
            counts.new += 1
        else:
            entry.incident = match[0].incident
            counts.merged += 1
        members[entry.incident].append(report)
        store.index.add(entry)
        decision, other = (match[1], match[0]) if match else (None, None)
        added.append((entry, report, report.fingerprint(), decision, other))
    if not members:
        return next_pk
    derived = {pk: canonical(reports) for pk, reports in members.items()}
    rows = [
        {"pk": pk, "id": store.new_id(members[pk][0]), **incident_row(fields), "updated_at": now}
        for pk, fields in derived.items()
    ]
    await session.execute(insert(table_of(Incident)), rows)
    await write_reports(session, added, [], origin, now)
    await write_children(session, derived)
    totals: dict[stats_summary.Key, stats_summary.Totals] = defaultdict(stats_summary.Totals)
    for row in rows:
        counted = None if row["loss_usd_basis"] == "nominal" else row["loss_usd"]
        stats_summary.count(totals, row["date"], row["attack_type"], counted, row["chain_list"])
    await stats_summary.apply(session, {}, totals)
    return next_pk

"""Writing source reports into the store: the one path every source takes, bundled or live.

Each report is kept as reported (``source_reports``), keyed by (source, source id). A report
seen before with the same content changes nothing; a changed one updates its incident; a new
one is resolved (``matching.py``) onto an incident or starts one. Every incident a run touched
is then derived again from all its reports (``canonical.py``): its row, chains, addresses,
transactions, references, names and search document. Nothing is deleted: a source that stops
listing an item does not remove what it said before. A bundled load never overwrites a report
that a live run or an import wrote.

The caller owns the transaction: nothing is visible to others until it commits.
"""

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Literal

from pydantic import TypeAdapter
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.alerts import INCIDENT_KIND, OutboxEntry
from kamiyo.db.tables import (
    Incident,
    ProtocolRow,
    ReportLink,
    SourceReportRow,
)
from kamiyo.intel import stats_summary
from kamiyo.intel.canonical import Canonical, canonical
from kamiyo.intel.incident_rows import incident_row, table_of, write_children
from kamiyo.intel.matching import Decision, Entry, Registry, ResolutionIndex, entry_for
from kamiyo.intel.names import name_words
from kamiyo.intel.reports import SourceReport

Origin = Literal["bundle", "live", "import"]
BATCH_SIZE = 2000
_ID = re.compile(r"^\d{8}_[a-z0-9][a-z0-9-]*(_\d+)?$")
_report = TypeAdapter(SourceReport)


@dataclass
class Counts:
    """What one run did to one source's reports."""

    new: int = 0  # reports that started an incident
    merged: int = 0  # new reports attached to an incident already known
    updated: int = 0  # reports seen before whose content changed
    unchanged: int = 0
    failed: int = 0

    def add(self, other: "Counts") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class Store:
    """One ingest run's view of the store: the resolution index and the incident ids taken."""

    index: ResolutionIndex
    ids: set[str]
    _next_handle: int = -1

    @classmethod
    async def load(
        cls, session: AsyncSession, *, distinct_sources: frozenset[str] = frozenset()
    ) -> "Store":
        """Index every stored report and every operator link (the run's memory)."""
        registry = await load_registry(session)
        index = ResolutionIndex(distinct_sources=distinct_sources, registry=registry)
        rows = await session.stream(
            select(SourceReportRow.incident_pk, SourceReportRow.report).execution_options(
                yield_per=5000
            )
        )
        async for incident_pk, report in rows:
            index.add(entry_for(_report.validate_python(report), incident_pk, registry))
        for link in await session.scalars(select(ReportLink)):
            index.link(
                link.kind, (link.left_source, link.left_id), (link.right_source, link.right_id)
            )
        ids = set((await session.scalars(select(Incident.id))).all())
        return cls(index=index, ids=ids)

    def _handle(self) -> int:
        self._next_handle -= 1
        return self._next_handle

    def new_id(self, report: SourceReport) -> str:
        if _ID.match(report.source_id) and report.source_id not in self.ids:
            candidate = report.source_id
        else:
            slug = "-".join(name_words(report.protocol))[:100] or "incident"
            base = f"{report.date:%Y%m%d}_{slug}"
            candidate, n = base, 1
            while candidate in self.ids:
                n += 1
                candidate = f"{base}_{n}"
        self.ids.add(candidate)
        return candidate

    async def ingest(
        self,
        session: AsyncSession,
        reports: Iterable[SourceReport],
        *,
        origin: Origin,
        now: dt.datetime | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> Counts:
        """Store ``reports`` (in batches) and bring their incidents up to date; ``on_batch``
        hears how many reports are done after each batch."""
        now = now or dt.datetime.now(dt.UTC)
        counts = Counts()
        iterator = iter(reports)
        done = 0
        while batch := tuple(islice(iterator, BATCH_SIZE)):
            counts.add(await self._ingest_batch(session, batch, origin, now))
            done += len(batch)
            if on_batch is not None:
                on_batch(done)
        return counts

    async def _ingest_batch(
        self,
        session: AsyncSession,
        batch: Sequence[SourceReport],
        origin: Origin,
        now: dt.datetime,
    ) -> Counts:
        counts = Counts()
        # An item a feed lists twice is one report (the later listing wins).
        unique = {(r.source, r.source_id): r for r in batch}
        counts.unchanged += len(batch) - len(unique)
        batch = list(unique.values())
        keys = set(unique)
        stored = {
            (row.source, row.source_id): row
            for row in await session.execute(
                select(
                    SourceReportRow.pk,
                    SourceReportRow.source,
                    SourceReportRow.source_id,
                    SourceReportRow.incident_pk,
                    SourceReportRow.fingerprint,
                    SourceReportRow.origin,
                )
                .where(SourceReportRow.source.in_({s for s, _ in keys}))
                .where(SourceReportRow.source_id.in_({i for _, i in keys}))
            )
        }
        touched: set[int] = set()
        changed: list[tuple[int, SourceReport, str]] = []
        added: list[tuple[Entry, SourceReport, str, Decision | None, Entry | None]] = []
        fresh: dict[int, list[SourceReport]] = {}  # incidents not yet written, by handle
        for report in batch:
            key = (report.source, report.source_id)
            fingerprint = report.fingerprint()
            if (row := stored.get(key)) is not None:
                bundle_over_live = origin == "bundle" and row.origin != "bundle"
                if row.fingerprint == fingerprint or bundle_over_live:
                    counts.unchanged += 1
                    continue
                changed.append((row.pk, report, fingerprint))
                touched.add(row.incident_pk)
                counts.updated += 1
                continue
            entry = entry_for(report, 0, self.index.registry)
            match = self.index.resolve(entry)
            if match is None:
                entry.incident = self._handle()
                fresh[entry.incident] = [report]
                counts.new += 1
            else:
                entry.incident = match[0].incident
                if entry.incident < 0:
                    fresh[entry.incident].append(report)
                else:
                    touched.add(entry.incident)
                counts.merged += 1
            self.index.add(entry)
            added.append(
                (
                    entry,
                    report,
                    fingerprint,
                    match[1] if match else None,
                    match[0] if match else None,
                )
            )

        # Every report of each touched incident, stored ones overlaid by this batch's.
        members: dict[int, dict[tuple[str, str], SourceReport]] = {pk: {} for pk in touched}
        if touched:
            for pk, data in await session.execute(
                select(SourceReportRow.incident_pk, SourceReportRow.report).where(
                    SourceReportRow.incident_pk.in_(touched)
                )
            ):
                report = _report.validate_python(data)
                members[pk][(report.source, report.source_id)] = report
        for _, report, _ in changed:
            pk = stored[(report.source, report.source_id)].incident_pk
            members[pk][(report.source, report.source_id)] = report
        for entry, report, *_ in added:
            if entry.incident > 0:
                members[entry.incident][entry.report_key] = report

        totals_before = await stats_summary.contributions(session, touched)
        born = {handle: canonical(reports) for handle, reports in fresh.items()}
        pk_of = await self._insert_incidents(session, fresh, born, now)
        for entry, *_ in added:
            if entry.incident < 0:
                self.index.move(entry, pk_of[entry.incident])
        derived = {pk: canonical(list(reports.values())) for pk, reports in members.items()}
        await _update_incidents(session, derived, now)
        derived.update({pk_of[handle]: fields for handle, fields in born.items()})
        await write_reports(session, added, changed, origin, now)
        await write_children(session, derived, replace=touched)
        totals_after = await stats_summary.contributions(session, derived)
        await stats_summary.apply(session, totals_before, totals_after)
        if origin != "bundle":  # the bundle is history, not news
            await _announce(session, set(pk_of.values()), touched, now)
        return counts

    async def _insert_incidents(
        self,
        session: AsyncSession,
        fresh: dict[int, list[SourceReport]],
        born: dict[int, Canonical],
        now: dt.datetime,
    ) -> dict[int, int]:
        if not fresh:
            return {}
        handles = list(fresh)
        rows = [
            {"id": self.new_id(fresh[h][0]), **incident_row(born[h]), "updated_at": now}
            for h in handles
        ]
        incidents = table_of(Incident)
        result = await session.execute(
            insert(incidents).returning(
                incidents.c.pk, incidents.c.id, sort_by_parameter_order=True
            ),
            rows,
        )
        return {h: pk for h, (pk, _) in zip(handles, result, strict=True)}


async def write_reports(
    session: AsyncSession,
    added: list[tuple[Entry, SourceReport, str, Decision | None, Entry | None]],
    changed: list[tuple[int, SourceReport, str]],
    origin: Origin,
    now: dt.datetime,
) -> None:
    """Store the new reports ``added`` (with the decision that placed each) and the
    ``changed`` ones' new content."""
    if added:
        await session.execute(
            insert(table_of(SourceReportRow)),
            [
                {
                    "source": report.source,
                    "source_id": report.source_id,
                    "incident_pk": entry.incident,
                    "origin": origin,
                    "fingerprint": fingerprint,
                    "report": report.model_dump(mode="json"),
                    "first_seen": now,
                    "last_seen": now,
                    "match_rule": decision.rule if decision else "new",
                    "match_score": decision.score if decision else None,
                    "match_evidence": {
                        **(decision.evidence if decision else {}),
                        **({"matched": list(other.report_key)} if other else {}),
                    },
                    "decided_by": "auto",
                    "decided_at": now,
                }
                for entry, report, fingerprint, decision, other in added
            ],
        )
    for pk, report, fingerprint in changed:
        await session.execute(
            update(SourceReportRow)
            .where(SourceReportRow.pk == pk)
            .values(
                report=report.model_dump(mode="json"),
                fingerprint=fingerprint,
                origin=origin,
                last_seen=now,
            )
        )


async def _announce(
    session: AsyncSession, created: set[int], updated: set[int], now: dt.datetime
) -> None:
    """Outbox rows for the alerts worker, in the ingest's own transaction: a crash after the
    commit loses no alert, and a rolled-back ingest announces nothing."""
    rows = [
        {
            "kind": INCIDENT_KIND,
            "payload": {"incident_pk": pk, "change": change},
            "created_at": now,
            "attempts": 0,
        }
        for change, pks in (("created", created), ("updated", updated - created))
        for pk in sorted(pks)
    ]
    if rows:
        await session.execute(insert(table_of(OutboxEntry)), rows)


async def _update_incidents(
    session: AsyncSession, derived: dict[int, Canonical], now: dt.datetime
) -> None:
    """Rewrite the rows of incidents whose reports changed (one executemany)."""
    if not derived:
        return
    rows = [
        {"b_pk": pk, **incident_row(fields), "updated_at": now} for pk, fields in derived.items()
    ]
    incidents = table_of(Incident)
    columns: dict[str, Any] = {name: bindparam(name) for name in rows[0] if name != "b_pk"}
    await session.execute(
        update(incidents).where(incidents.c.pk == bindparam("b_pk")).values(columns), rows
    )


async def load_registry(session: AsyncSession) -> Registry:
    """The protocol families the stored registry records describe."""
    rows = await session.execute(
        select(ProtocolRow.name, ProtocolRow.slug, ProtocolRow.parent, ProtocolRow.defillama_id)
    )
    return Registry.of((name, slug, parent, dl_id) for name, slug, parent, dl_id in rows)

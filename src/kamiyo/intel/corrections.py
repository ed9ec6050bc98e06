"""Why reports merged, and an operator's corrections: split a report out, merge two incidents.

A correction is written twice: the reports move now, and a ``report_links`` row keyed by
(source, source id) makes every later ingest respect it (``matching.ResolutionIndex``).
"""

import datetime as dt
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident, ReportLink, SourceReportRow
from kamiyo.intel import fulltext, stats_summary
from kamiyo.intel.canonical import canonical
from kamiyo.intel.incident_rows import incident_row, write_children
from kamiyo.intel.matching import ResolutionIndex
from kamiyo.intel.models import FrozenModel
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.scope import NotFoundError
from kamiyo.intel.store import Store

_report = TypeAdapter(SourceReport)


class CorrectionError(ValueError):
    """A correction that cannot be made as asked (the message says why)."""


class MergeEvidence(FrozenModel):
    source: str
    source_id: str
    url: str | None
    protocol: str
    date: dt.date
    rule: str
    score: float | None
    evidence: dict[str, Any]
    decided_by: str
    decided_at: dt.datetime


async def _incident(session: AsyncSession, incident_id: str) -> Incident:
    row = await session.scalar(select(Incident).where(Incident.id == incident_id))
    if row is None:
        raise NotFoundError(f"no incident with id {incident_id!r}")
    return row


async def explain(session: AsyncSession, incident_id: str) -> list[MergeEvidence]:
    """Each report of the incident, with the rule and evidence that attached it."""
    incident = await _incident(session, incident_id)
    rows = await session.scalars(
        select(SourceReportRow)
        .where(SourceReportRow.incident_pk == incident.pk)
        .order_by(SourceReportRow.pk)
    )
    explained = []
    for row in rows:
        report = _report.validate_python(row.report)
        explained.append(
            MergeEvidence(
                source=row.source,
                source_id=row.source_id,
                url=report.url,
                protocol=report.protocol,
                date=report.date,
                rule=row.match_rule,
                score=row.match_score,
                evidence=row.match_evidence or {},
                decided_by=row.decided_by,
                decided_at=row.decided_at,
            )
        )
    return explained


async def _rederive(session: AsyncSession, pks: list[int], now: dt.datetime) -> None:
    for pk in pks:
        reports = [
            _report.validate_python(data)
            for data in await session.scalars(
                select(SourceReportRow.report).where(SourceReportRow.incident_pk == pk)
            )
        ]
        derived = canonical(reports)
        await session.execute(
            update(Incident)
            .where(Incident.pk == pk)
            .values(**incident_row(derived), updated_at=now)
        )
        await write_children(session, {pk: derived}, replace=[pk])


def _link(kind: str, left: tuple[str, str], right: tuple[str, str], now: dt.datetime) -> ReportLink:
    return ReportLink(
        kind=kind,
        left_source=left[0],
        left_id=left[1],
        right_source=right[0],
        right_id=right[1],
        created_at=now,
    )


async def split(session: AsyncSession, incident_id: str, source: str, source_id: str) -> str:
    """Move one report out of an incident into an incident of its own; returns the new id.

    The report is kept apart from every report it leaves behind, in later ingests too.
    """
    now = dt.datetime.now(dt.UTC)
    incident = await _incident(session, incident_id)
    rows = list(
        await session.scalars(
            select(SourceReportRow).where(SourceReportRow.incident_pk == incident.pk)
        )
    )
    moving = next((r for r in rows if (r.source, r.source_id) == (source, source_id)), None)
    if moving is None:
        raise CorrectionError(f"incident {incident_id} has no report {source}:{source_id}")
    if len(rows) == 1:
        raise CorrectionError(f"{source}:{source_id} is the only report of {incident_id}")
    report = _report.validate_python(moving.report)
    totals_before = await stats_summary.contributions(session, [incident.pk])
    store = Store(index=ResolutionIndex(), ids=set(await session.scalars(select(Incident.id))))
    derived = canonical([report])
    new = Incident(id=store.new_id(report), **incident_row(derived), updated_at=now)
    session.add(new)
    await session.flush()
    moving.incident_pk = new.pk
    moving.match_rule, moving.match_score, moving.match_evidence = "operator_split", None, {}
    moving.decided_by, moving.decided_at = "operator", now
    for other in rows:
        if other is not moving:
            session.add(_link("apart", (source, source_id), (other.source, other.source_id), now))
    await write_children(session, {new.pk: derived})
    await _rederive(session, [incident.pk], now)
    totals_after = await stats_summary.contributions(session, [incident.pk, new.pk])
    await stats_summary.apply(session, totals_before, totals_after)
    await session.commit()
    return new.id


async def merge(session: AsyncSession, keep_id: str, other_id: str) -> int:
    """Move every report of ``other_id`` into ``keep_id`` and drop ``other_id``; returns how
    many reports moved. Each moved report is kept together with the kept incident's."""
    if keep_id == other_id:
        raise CorrectionError("an incident cannot be merged with itself")
    now = dt.datetime.now(dt.UTC)
    keep = await _incident(session, keep_id)
    other = await _incident(session, other_id)
    totals_before = await stats_summary.contributions(session, [keep.pk, other.pk])
    anchor = await session.scalar(
        select(SourceReportRow)
        .where(SourceReportRow.incident_pk == keep.pk)
        .order_by(SourceReportRow.pk)
        .limit(1)
    )
    moving = list(
        await session.scalars(
            select(SourceReportRow).where(SourceReportRow.incident_pk == other.pk)
        )
    )
    for row in moving:
        row.incident_pk = keep.pk
        row.match_rule, row.match_score, row.match_evidence = "operator_merge", None, {}
        row.decided_by, row.decided_at = "operator", now
        if anchor is not None:
            pair = ((row.source, row.source_id), (anchor.source, anchor.source_id))
            session.add(_link("together", *pair, now))
            # An earlier split of these two is undone by this merge.
            for left, right in (pair, pair[::-1]):
                await session.execute(
                    delete(ReportLink).where(
                        ReportLink.kind == "apart",
                        ReportLink.left_source == left[0],
                        ReportLink.left_id == left[1],
                        ReportLink.right_source == right[0],
                        ReportLink.right_id == right[1],
                    )
                )
    await session.flush()
    await fulltext.delete_documents(session, [other.pk])
    await session.delete(other)
    await _rederive(session, [keep.pk], now)
    # The dropped incident reads as absent now: its totals leave with it.
    totals_after = await stats_summary.contributions(session, [keep.pk, other.pk])
    await stats_summary.apply(session, totals_before, totals_after)
    await session.commit()
    return len(moving)

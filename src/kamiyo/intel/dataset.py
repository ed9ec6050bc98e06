"""What the store holds: incidents, loaded datasets, and each source's freshness."""

import datetime as dt

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Dataset, SourceReportRow, SourceState
from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.intel.models import (
    FrozenModel,
)


class SourceFreshness(FrozenModel):
    reports: int = Field(description="Reports of this source in the store.")
    last_success: dt.datetime | None = Field(description="When a refresh last worked.")
    last_error: str | None = Field(description="The last refresh's error, if it failed.")
    newest_report: dt.date | None = Field(description="The latest incident date it reports.")


class DatasetInfo(FrozenModel):
    incidents: int
    newest_incident: dt.date | None
    datasets: dict[str, dt.datetime] = Field(description="Loaded datasets and when they loaded.")
    sources: dict[str, SourceFreshness] = Field(
        default_factory=dict,
        description="Each source that has reports or has been refreshed: how fresh it is.",
    )


async def dataset_info(session: AsyncSession) -> DatasetInfo:
    count, newest = (
        await session.execute(select(func.count(IncidentRow.pk), func.max(IncidentRow.date)))
    ).one()
    loaded = {d.name: d.loaded_at for d in await session.scalars(select(Dataset))}
    held = {
        source: (reports, newest_day)
        for source, reports, newest_day in await session.execute(
            select(
                SourceReportRow.source,
                func.count(SourceReportRow.pk),
                func.max(IncidentRow.date),
            )
            .join(IncidentRow, IncidentRow.pk == SourceReportRow.incident_pk)
            .group_by(SourceReportRow.source)
        )
    }
    states = {s.name: s for s in await session.scalars(select(SourceState))}
    sources = {
        name: SourceFreshness(
            reports=held.get(name, (0, None))[0],
            newest_report=held.get(name, (0, None))[1],
            last_success=states[name].last_success_at if name in states else None,
            last_error=states[name].last_error if name in states else None,
        )
        for name in sorted(held.keys() | states.keys())
    }
    return DatasetInfo(incidents=count, newest_incident=newest, datasets=loaded, sources=sources)

"""Operations about the server and the caller rather than about exploits."""

import time

from pydantic import BaseModel, Field
from sqlalchemy import text

from kamiyo import __version__
from kamiyo.access.usage import UsageReport
from kamiyo.intel import DatasetInfo, NotFoundError, dataset_info
from kamiyo.intel.models import QueryModel
from kamiyo.payments import bundles
from kamiyo.service.state import Job


class NoArguments(QueryModel):
    """An operation that takes no arguments."""


class HealthReport(BaseModel):
    status: str = Field(description="ok, or degraded when the database cannot be read.")
    version: str
    uptime_seconds: float
    database: str = Field(description="Backend and whether it answered.")
    limits: str = Field(description="Where rate limits are counted and whether it answers.")
    dataset: DatasetInfo | None


async def health(job: Job, query: NoArguments) -> HealthReport:
    backend = job.session.get_bind().dialect.name
    try:
        await job.session.execute(text("SELECT 1"))
        info: DatasetInfo | None = await dataset_info(job.session)
        database, status = f"{backend}: ok", "ok"
    except Exception as exc:  # a health check reports failures, it does not raise them
        info, database, status = None, f"{backend}: {type(exc).__name__}", "degraded"
    return HealthReport(
        status=status,
        version=__version__,
        uptime_seconds=round(time.monotonic() - job.state.started_monotonic, 1),
        database=database,
        limits=await job.state.gate.limits_status(),
        dataset=info,
    )


class UsageQuery(QueryModel):
    bundle_token: str | None = Field(
        default=None,
        max_length=64,
        description="A bundle token a paid answer gave: its calls left are reported too.",
    )


async def usage(job: Job, query: UsageQuery) -> UsageReport:
    report = await job.state.gate.usage(job.grant, job.session)
    if query.bundle_token is None:
        return report
    found = await bundles.balance(job.session, query.bundle_token)
    if found is None:
        raise NotFoundError("No bundle has this token: check it, or buy one (see get_pricing).")
    return report.model_copy(update={"bundle": bundles.BundleState.of(found)})

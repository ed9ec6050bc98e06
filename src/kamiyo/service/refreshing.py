"""Refreshing the sources from the settings: one run now, or one every so often.

``kamiyo ingest`` runs once, ``kamiyo worker`` and ``kamiyo serve --refresh-every`` run
:func:`refresh_forever`. Each run takes the ingest lock, so instances sharing a database refresh
one at a time; a run that changed something calls ``on_change`` (the server clears its answer
cache there, so a new incident is visible at once).
"""

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict
from typing import Any

from kamiyo import metrics
from kamiyo.config import SourceSettings
from kamiyo.db.engine import ingest_lock
from kamiyo.intel.refresh import Progress, Run, SourceRun, run_sources
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources.base import Adapter
from kamiyo.intel.sources.fetch import Fetcher
from kamiyo.intel.sources.fetch_rules import HostPacer
from kamiyo.intel.store import Origin
from kamiyo.runtime import Runtime

log = logging.getLogger(__name__)


class UnknownSourceError(ValueError):
    pass


def select_adapters(settings: SourceSettings, names: Sequence[str] = ()) -> list[Adapter]:
    """The adapters named (any, enabled or not), or every enabled one."""
    from kamiyo.intel.sources.registry import ADAPTERS  # the parsers load only when needed

    known = {a.info.name: a for a in ADAPTERS}
    if names:
        missing = [n for n in names if n not in known]
        if missing:
            raise UnknownSourceError(
                f"unknown source {', '.join(missing)}: known sources are {', '.join(known)}"
            )
        return [known[n] for n in names]
    return [a for a in ADAPTERS if is_enabled(a, settings)]


def all_adapters() -> tuple[Adapter, ...]:
    from kamiyo.intel.sources.registry import ADAPTERS

    return ADAPTERS


def is_enabled(adapter: Adapter, settings: SourceSettings) -> bool:
    if adapter.info.name in settings.disabled:
        return False
    return adapter.info.enabled


def location_of(adapter: Adapter, settings: SourceSettings) -> str:
    return settings.urls.get(adapter.info.name, adapter.info.url)


async def refresh(
    runtime: Runtime,
    adapters: Sequence[Adapter],
    *,
    source_from: str | None = None,
    since: dt.date | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[SourceRun]:
    """One run over ``adapters``; ``source_from`` (with one adapter) reads another location,
    local files included."""
    settings = runtime.settings.sources
    pacer = HostPacer(settings.min_interval_s)  # one run's politeness, shared by its sources
    origin: Origin = "import" if source_from else "live"

    def fetch_for(name: str, validators: dict[str, Any]) -> AbstractAsyncContextManager[Any]:
        # --from names a location an operator chose (a file, a mirror on the local network):
        # local files and private addresses are allowed for it, and only for it.
        return Fetcher(
            name,
            settings,
            validators={} if source_from else validators,
            allow_local=source_from is not None,
            allow_private=settings.allow_private or source_from is not None,
            pacer=pacer,
        )

    def base_for(adapter: Adapter) -> str:
        return source_from or location_of(adapter, settings)

    run = Run(
        adapters=adapters,
        fetch_for=fetch_for,
        base_for=base_for,
        origin=origin,
        since=since,
        dry_run=dry_run,
        distinct_sources=frozenset(a.info.name for a in adapters if a.info.distinct_items)
        | _bundled_distinct(),
    )
    if progress is not None:
        run.progress = progress
    async with ingest_lock(runtime.engine):
        results = await run_sources(run, runtime.sessions)
    for result in [] if dry_run else results:
        metrics.count_ingest(result.name, result.error is not None, asdict(result.counts))
    return results


def _bundled_distinct() -> frozenset[str]:
    from kamiyo.intel.bundled import DISTINCT_SOURCES

    return DISTINCT_SOURCES


def changed(results: Sequence[SourceRun]) -> bool:
    return any(r.counts.new or r.counts.merged or r.counts.updated or r.removed for r in results)


async def refresh_forever(
    runtime: Runtime,
    every_s: float,
    on_change: Callable[[], Awaitable[None] | None] = lambda: None,
) -> None:
    """Refresh every enabled source every ``every_s`` seconds until cancelled."""
    while True:
        try:
            results = await refresh(runtime, select_adapters(runtime.settings.sources))
        except Exception:  # a bug or a database outage must not end the schedule
            log.exception("scheduled refresh failed")
        else:
            failed = [r.name for r in results if r.error]
            log.info(
                "refreshed %d sources: %d new, %d merged, %d updated%s",
                len(results),
                sum(r.counts.new for r in results),
                sum(r.counts.merged for r in results),
                sum(r.counts.updated for r in results),
                f"; failed: {', '.join(failed)}" if failed else "",
            )
            if changed(results):
                outcome = on_change()
                if outcome is not None:
                    await outcome
        await asyncio.sleep(every_s)


# How often a serving instance looks for data another instance (or a worker) ingested.
WATCH_EVERY_S = 5.0


async def _data_version(runtime: Runtime) -> tuple[object, ...]:
    from sqlalchemy import func, select

    from kamiyo.db.tables import SourceReportRow, SourceState

    async with runtime.sessions() as session:
        reports = (
            await session.execute(
                select(func.count(SourceReportRow.pk), func.max(SourceReportRow.decided_at))
            )
        ).one()
        # A failed run stores nothing: only a successful one can have changed the data.
        ran = await session.scalar(select(func.max(SourceState.last_success_at)))
    return (*reports, ran)


async def watch_data(runtime: Runtime, on_change: Callable[[], None]) -> None:
    """Call ``on_change`` whenever the stored reports change, whoever changed them."""
    seen = await _data_version(runtime)
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        try:
            now = await _data_version(runtime)
        except Exception:  # an outage: the answers cache simply lives on its TTL meanwhile
            log.debug("could not read the data version", exc_info=True)
            continue
        if now != seen:
            seen = now
            on_change()


@asynccontextmanager
async def keeping_current(runtime: Runtime, on_change: Callable[[], None]) -> AsyncIterator[None]:
    """While serving: refresh on the settings' schedule, if any, and drop cached answers
    whenever the data changes (here or on another instance)."""
    tasks = [asyncio.create_task(watch_data(runtime, on_change), name="kamiyo-data-watch")]
    every = runtime.settings.sources.refresh_every
    if every:
        tasks.append(
            asyncio.create_task(refresh_forever(runtime, every, on_change), name="kamiyo-refresh")
        )
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect_upstream(settings: SourceSettings, location: str) -> list[SourceReport]:
    """DeFiHackLabs' reports read from its own files (a clone, or raw URLs), for the bundle."""
    from kamiyo.intel.sources import defihacklabs

    async with Fetcher(
        defihacklabs.INFO.name, settings, allow_local=True, allow_private=True
    ) as fetch:
        collected = await defihacklabs.ADAPTER.collect(fetch, location)
    if collected.failed:
        log.warning("%d DeFiHackLabs documents could not be read", collected.failed)
    return collected.reports

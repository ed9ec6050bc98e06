"""One ingest run: every enabled source fetched, parsed, resolved and stored, one at a time.

Failures are per source. A source whose fetch or parse fails gets one error line and its
``source_state`` row says so; the other sources go on, and nothing it stored before is touched,
because a source's reports are written in the same transaction as its state, after its whole
collection has parsed. A parser that finds no items where the last good run found some has met
a changed layout: an error, not "no incidents". A sanctions list an adapter hands over is
complete, and replaces the stored one in the same transaction. Only one run writes at a time
across instances (``db.engine.ingest_lock``); a second waits for the first and then finds its
work done.
"""

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.db.tables import ProtocolRow, SourceState
from kamiyo.intel.names import name_key
from kamiyo.intel.reports import ProtocolRecord
from kamiyo.intel.sanctions import store_list
from kamiyo.intel.sources.base import (
    Adapter,
    Collected,
    Document,
    Fetch,
    FetchError,
    SourceFormatError,
)
from kamiyo.intel.store import Counts, Origin, Store, load_registry

log = logging.getLogger(__name__)


@dataclass
class SourceRun:
    """What one source's part of a run did."""

    name: str
    counts: Counts = field(default_factory=Counts)
    protocols: int = 0
    error: str | None = None
    seconds: float = 0.0
    items_seen: int = 0
    # Sanctions-list entries the source no longer lists, removed (its new, updated and
    # unchanged entries are counted in ``counts``).
    removed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self.counts),
            "removed": self.removed,
            "protocols": self.protocols,
            "error": self.error,
        }


# Progress reporting: (source name, stage, done so far, total when known). The stages are
# "fetching" (documents fetched), "resolving" (reports stored, of the total), then "done" or
# "failed" (with the items the source listed).
Progress = Callable[[str, str, int, int | None], None]


def _quiet(name: str, stage: str, done: int, total: int | None) -> None:
    return None


@dataclass
class Run:
    """The inputs of one run. ``fetch_for`` builds the fetch layer for one source, from the
    validators it kept last time (the dict is updated in place by a successful fetch)."""

    adapters: Sequence[Adapter]
    fetch_for: Callable[[str, dict[str, Any]], Any]  # -> async context manager of a Fetch
    base_for: Callable[[Adapter], str]
    origin: Origin = "live"
    since: dt.date | None = None
    dry_run: bool = False
    distinct_sources: frozenset[str] = frozenset()
    progress: Progress = _quiet


async def _state(session: AsyncSession, name: str) -> SourceState:
    state = await session.get(SourceState, name)
    if state is None:
        state = SourceState(name=name, validators={}, last_summary={})
        session.add(state)
    return state


async def _store_protocols(
    session: AsyncSession, records: list[ProtocolRecord], now: dt.datetime
) -> int:
    """Upsert registry records by (source, slug); returns how many were new or changed."""
    changed = 0
    existing = {
        (row.source, row.slug): row
        for row in await session.scalars(
            select(ProtocolRow).where(ProtocolRow.source.in_({r.source for r in records}))
        )
    }
    for record in records:
        data = record.model_dump(mode="json")
        row = existing.get((record.source, record.slug))
        if row is not None and row.record == data:
            continue
        changed += 1
        if row is None:
            session.add(
                ProtocolRow(
                    source=record.source,
                    slug=record.slug,
                    name=record.name,
                    key=name_key(record.name),
                    defillama_id=record.defillama_id,
                    parent=record.parent,
                    record=data,
                    updated_at=now,
                )
            )
        else:
            row.name, row.key, row.parent = record.name, name_key(record.name), record.parent
            row.defillama_id, row.record, row.updated_at = record.defillama_id, data, now
    return changed


async def _collect(run: Run, adapter: Adapter, fetch: Fetch, store: Store) -> Collected:
    name = adapter.info.name
    fetched = 0

    async def counted(location: str) -> Document | None:
        nonlocal fetched
        document = await fetch(location)
        fetched += 1
        run.progress(name, "fetching", fetched, None)
        return document

    return await adapter.collect(
        counted,
        run.base_for(adapter),
        since=run.since,
        seen=lambda source_id: (name, source_id) in store.index.by_report,
    )


async def run_sources(run: Run, sessions: async_sessionmaker[AsyncSession]) -> list[SourceRun]:
    """Refresh each adapter in turn; one :class:`SourceRun` per adapter, in order."""
    results: list[SourceRun] = []
    async with sessions() as session:
        store = await Store.load(session, distinct_sources=run.distinct_sources)
    for adapter in run.adapters:
        results.append(await _run_one(run, adapter, sessions, store))
    return results


async def _run_one(
    run: Run, adapter: Adapter, sessions: async_sessionmaker[AsyncSession], store: Store
) -> SourceRun:
    name = adapter.info.name
    result = SourceRun(name)
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    async with sessions() as session:
        state = await _state(session, name)
        validators: dict[str, Any] = dict(state.validators or {})
        before = state.items_seen
        try:
            run.progress(name, "fetching", 0, None)
            async with run.fetch_for(name, validators) as fetch:
                collected = await _collect(run, adapter, fetch, store)
            if collected.items_seen == 0 and collected.unchanged_documents == 0 and before:
                raise SourceFormatError(
                    f"{name}: found no items where the last good run found {before}: "
                    "the source's layout may have changed"
                )
            total = len(collected.reports)
            run.progress(name, "resolving", 0, total)
            result.counts = await store.ingest(
                session,
                collected.reports,
                origin=run.origin,
                now=now,
                on_batch=lambda done: run.progress(name, "resolving", done, total),
            )
            result.counts.failed += collected.failed
            result.protocols = await _store_protocols(session, collected.protocols, now)
            if result.protocols:
                # Later sources of this run resolve names with the new registry too.
                await session.flush()
                store.index.registry = await load_registry(session)
            if collected.sanctions is not None:
                change = await store_list(session, collected.sanctions, origin=run.origin, now=now)
                result.counts.new += change.added
                result.counts.updated += change.updated
                result.counts.unchanged += change.unchanged
                result.removed = change.removed
            result.items_seen = collected.items_seen
        except (FetchError, SourceFormatError) as exc:
            await session.rollback()
            result.error = str(exc)
            log.warning("source %s failed: %s", name, exc)
        result.seconds = round(time.perf_counter() - started, 2)
        run.progress(name, "failed" if result.error else "done", result.items_seen, None)
        if run.dry_run:
            await session.rollback()
            return result
        state = await _state(session, name)
        state.last_run_at = now
        state.last_summary = {**result.as_json(), "seconds": result.seconds}
        if result.error is None:
            state.last_success_at = now
            state.validators = validators
            if result.items_seen or not before:
                state.items_seen = result.items_seen
        else:
            state.last_error_at, state.last_error = now, result.error
        await session.commit()
    return result

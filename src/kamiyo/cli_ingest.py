"""``kamiyo ingest``, ``kamiyo sources``, ``kamiyo worker`` and ``kamiyo incidents …``."""

import asyncio
import datetime as dt
import json
import signal
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import func, select

from kamiyo.cli_support import err, fail, run, stdout_console
from kamiyo.db.tables import SourceReportRow, SourceState
from kamiyo.intel import corrections, sanctions
from kamiyo.intel.refresh import SourceRun
from kamiyo.intel.scope import NotFoundError
from kamiyo.intel.sources import ofac
from kamiyo.runtime import Runtime
from kamiyo.service.refreshing import (
    UnknownSourceError,
    all_adapters,
    is_enabled,
    location_of,
    refresh,
    refresh_forever,
    select_adapters,
)

incidents_app = typer.Typer(help="Why reports merged, and corrections.", no_args_is_help=True)


class _Display:
    """One line per source: documents fetched so far (their number is not known ahead), then
    a bar of the reports resolved and stored, then how many items the source listed."""

    COLUMNS = (
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description:<18}"),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[stage]:<26}"),
        TimeElapsedColumn(),
    )

    def __init__(self, progress: Progress, names: list[str]) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {
            name: progress.add_task(name, total=None, stage="waiting", start=False)
            for name in names
        }

    def __call__(self, name: str, stage: str, done: int, total: int | None) -> None:
        task = self.tasks[name]
        if stage == "fetching":
            self.progress.start_task(task)
            plural = "" if done == 1 else "s"
            self.progress.update(task, stage=f"fetching: {done:,} document{plural}")
        elif stage == "resolving":
            self.progress.update(
                task, total=total, completed=done, stage=f"resolving: {done:,}/{total:,}"
            )
        else:
            shown = "failed: see the summary" if stage == "failed" else f"done: {done:,} items"
            self.progress.update(task, total=1, completed=int(stage != "failed"), stage=shown)
            self.progress.stop_task(task)


def _summary(results: list[SourceRun], dry_run: bool) -> Table:
    title = "Ingest summary (dry run: nothing was written)" if dry_run else "Ingest summary"
    table = Table(title=title)
    columns = ("Source", "New", "Merged", "Updated", "Unchanged", "Removed", "Failed", "Duration")
    for column in columns:
        table.add_column(column, justify="left" if column == "Source" else "right")
    table.add_column("Error")
    for r in results:
        c = r.counts
        table.add_row(
            r.name,
            *(f"{n:,}" for n in (c.new, c.merged, c.updated, c.unchanged, r.removed, c.failed)),
            f"{r.seconds:.1f} s",
            escape(r.error or ""),
        )
    return table


def ingest(
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only this source (repeatable).")
    ] = None,
    since: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Re-read items dated on or after this day."),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Read the source's own format from this file, folder or URL (needs --source).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would change; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Refresh every enabled source (or --source NAME) and print what changed."""
    if from_ is not None and len(source or []) != 1:
        fail("--from reads one source's format: give exactly one --source", code=2)

    async def work(runtime: Runtime) -> list[SourceRun]:
        try:
            adapters = select_adapters(runtime.settings.sources, source or ())
        except UnknownSourceError as exc:
            fail(str(exc), code=2)
        with Progress(*_Display.COLUMNS, console=err, transient=as_json) as bar:
            display = _Display(bar, [a.info.name for a in adapters])
            return await refresh(
                runtime,
                adapters,
                source_from=from_,
                since=since.date() if since else None,
                dry_run=dry_run,
                progress=display,
            )

    results = run(work)
    if as_json:
        document = {"dry_run": dry_run, "sources": {r.name: r.as_json() for r in results}}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        stdout_console().print(_summary(results, dry_run))
    if results and all(r.error for r in results):
        raise typer.Exit(1)


def sources(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the sources: enabled, location, licence, last success and error, what they hold."""

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.sessions() as session:
            states = {s.name: s for s in await session.scalars(select(SourceState))}
            held = {
                name: (reports, incidents)
                for name, reports, incidents in await session.execute(
                    select(
                        SourceReportRow.source,
                        func.count(SourceReportRow.pk),
                        func.count(SourceReportRow.incident_pk.distinct()),
                    ).group_by(SourceReportRow.source)
                )
            }
            lists = {held.name: held for held in await sanctions.held_lists(session)}
        rows = []
        for adapter in all_adapters():
            info, state = adapter.info, states.get(adapter.info.name)
            reports, incidents = held.get(info.name, (0, 0))
            listed = lists.get(ofac.LIST_NAME) if info.name == ofac.INFO.name else None
            rows.append(
                {
                    "name": info.name,
                    "title": info.title,
                    "enabled": is_enabled(adapter, runtime.settings.sources),
                    "bundled": info.bundled,
                    "url": location_of(adapter, runtime.settings.sources),
                    "licence": info.licence,
                    "attribution": info.attribution,
                    "last_success": _iso(state.last_success_at if state else None),
                    "last_error": state.last_error if state else None,
                    "last_error_at": _iso(state.last_error_at if state else None),
                    "reports": reports,
                    "incidents": incidents,
                    # A sanctions list holds addresses, not reports: how many, and as of when.
                    "list_entries": listed.entries if listed else None,
                    "list_date": listed.date.isoformat() if listed else None,
                }
            )
        return rows

    rows = run(work)
    if as_json:
        sys.stdout.write(json.dumps({"sources": rows}, indent=2) + "\n")
        return
    table = Table()
    for column in ("Source", "Enabled", "Reports", "Incidents", "Last success", "Last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            f"{row['name']}\n[dim]{escape(row['url'])}[/dim]",
            ("yes" if row["enabled"] else "no") + (" (bundled)" if row["bundled"] else ""),
            f"{row['reports']:,}"
            if row["list_entries"] is None
            else f"{row['list_entries']:,} addresses\n[dim]as of {row['list_date']}[/dim]",
            f"{row['incidents']:,}",
            row["last_success"] or "never",
            escape(row["last_error"] or ""),
        )
    out = stdout_console()
    out.print(table)
    for row in rows:
        out.print(f"[bold]{row['name']}[/bold]: {escape(row['licence'])}. {row['attribution']}")


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def worker(
    every: Annotated[
        str | None, typer.Option(help="How often to refresh, e.g. 15m or 1h (default: settings).")
    ] = None,
) -> None:
    """Send alerts (webhooks, queued mail), resolve x402 settlements sent without an answer,
    and refresh the enabled sources on a schedule, if one is given, until stopped (Ctrl-C).

    Serving instances do the same work unless KAMIYO_ALERTS_WORKER=false; any number of
    workers and instances share it through the database, each change delivered once per rule.
    """
    from kamiyo.access.retention import pruning_usage
    from kamiyo.alerts.bus import change_bus
    from kamiyo.alerts.worker import alerts_working
    from kamiyo.config import parse_duration
    from kamiyo.payments.reconcile import reconciling
    from kamiyo.web.metrics_endpoint import worker_metrics

    try:
        given = parse_duration(every) if every else None
    except ValueError as exc:
        fail(f"--every: {exc}", code=2)

    async def work(runtime: Runtime) -> None:
        settings = runtime.settings
        interval = given or settings.sources.refresh_every
        # SIGTERM stops it as Ctrl-C does: the alerts round in progress finishes (within
        # KAMIYO_SHUTDOWN_GRACE_S, alerts/worker.py), a refresh in progress is abandoned.
        this = asyncio.current_task()
        if this is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
        async with (
            worker_metrics(settings),  # KAMIYO_METRICS_WORKER_PORT
            change_bus(settings) as bus,
            alerts_working(runtime.sessions, settings, bus) as alerts,
            pruning_usage(runtime.sessions, settings),  # usage retention, daily by default
            reconciling(runtime.sessions, settings.x402),  # pending x402 settlements
        ):
            if not interval:
                err.print(
                    "Sending alerts; no source refresh (give --every 15m or set "
                    "KAMIYO_SOURCES_REFRESH_EVERY). Ctrl-C stops."
                )
                await asyncio.Event().wait()  # until Ctrl-C
                return
            err.print(
                f"Sending alerts and refreshing {len(select_adapters(settings.sources))} "
                f"sources every {interval:g} s (Ctrl-C stops)."
            )
            await refresh_forever(runtime, interval, alerts.wake)

    try:
        run(work)
    except asyncio.CancelledError:
        raise typer.Exit(130) from None


@incidents_app.command("explain")
def incidents_explain(
    incident_id: Annotated[str, typer.Argument(help="The incident, e.g. 20220329_ronin-network.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show each report of an incident and the rule and evidence that merged it."""

    async def work(runtime: Runtime) -> list[corrections.MergeEvidence]:
        async with runtime.sessions() as session:
            return await corrections.explain(session, incident_id)

    try:
        explained = run(work)
    except NotFoundError as exc:
        fail(str(exc))
    if as_json:
        rows = [e.model_dump(mode="json") for e in explained]
        sys.stdout.write(json.dumps({"incident": incident_id, "reports": rows}, indent=2) + "\n")
        return
    table = Table(title=f"Reports of {incident_id}")
    for column in ("Source", "Id", "Protocol", "Date", "Rule", "Score", "Evidence"):
        table.add_column(column)
    for e in explained:
        evidence = ", ".join(f"{k}={v}" for k, v in e.evidence.items())
        rule = e.rule if e.decided_by == "auto" else f"{e.rule} (operator)"
        score = "" if e.score is None else f"{e.score:.2f}"
        table.add_row(e.source, e.source_id, e.protocol, str(e.date), rule, score, escape(evidence))
    stdout_console().print(table)


@incidents_app.command("split")
def incidents_split(
    incident_id: Annotated[str, typer.Argument(help="The incident to take a report out of.")],
    report: Annotated[str, typer.Argument(help="The report, as SOURCE:SOURCE_ID.")],
) -> None:
    """Move one report into an incident of its own, and keep it apart in later ingests."""
    source, _, source_id = report.partition(":")
    if not source or not source_id:
        fail("give the report as SOURCE:SOURCE_ID, e.g. notable:20220323_ronin", code=2)

    async def work(runtime: Runtime) -> str:
        async with runtime.sessions() as session:
            return await corrections.split(session, incident_id, source, source_id)

    try:
        new_id = run(work)
    except (NotFoundError, corrections.CorrectionError) as exc:
        fail(str(exc))
    err.print(f"Moved {report} out of {incident_id} into {new_id}.")


@incidents_app.command("merge")
def incidents_merge(
    keep_id: Annotated[str, typer.Argument(help="The incident that stays.")],
    other_id: Annotated[str, typer.Argument(help="The incident whose reports join it.")],
) -> None:
    """Merge two incidents into one, and keep them together in later ingests."""

    async def work(runtime: Runtime) -> int:
        async with runtime.sessions() as session:
            return await corrections.merge(session, keep_id, other_id)

    try:
        moved = run(work)
    except (NotFoundError, corrections.CorrectionError) as exc:
        fail(str(exc))
    err.print(f"Merged {other_id} into {keep_id} ({moved} report(s) moved).")


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(sources)
    app.command()(worker)
    app.add_typer(incidents_app, name="incidents")

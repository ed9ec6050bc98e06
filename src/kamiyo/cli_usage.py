"""Operator commands for metered usage (``kamiyo usage …``)."""

import datetime as dt
import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select, union

from kamiyo.access import accounts
from kamiyo.access.instances import Gap, unclean_stops
from kamiyo.access.meter import ChainCheck, chain_of, verify_chain
from kamiyo.access.receipts import PaidCall, account_receipts
from kamiyo.access.retention import ChainPrune, PruneReport, prune_usage
from kamiyo.access.usage import Breakdown, UsageRow, usage_breakdown
from kamiyo.access.usage_checkpoint import checkpoint_key
from kamiyo.cli_accounts import run_account_work
from kamiyo.cli_support import err, fail, stdout_console
from kamiyo.db.usage import UsageChain, UsageRecord
from kamiyo.runtime import Runtime

usage_app = typer.Typer(help="Metered usage (operators).", no_args_is_help=True)


@usage_app.command("verify")
def usage_verify(
    email: Annotated[
        str | None, typer.Argument(help="One account's chain; all chains when omitted.")
    ] = None,
) -> None:
    """Recompute usage hash chains and report any record altered, removed or out of order.

    Also lists instances that died without a clean stop (their last flush interval's calls may
    be missing: nothing was written, so no chain shows it). Those are warnings: the exit status
    is 1 only when a chain does not verify.
    """

    async def work(runtime: Runtime) -> tuple[list[ChainCheck], list[Gap]]:
        async with runtime.sessions() as session:
            if email is not None:
                account = await accounts.find_account(session, email)
                if account is None:
                    raise accounts.AccountError(f"no account for {email}")
                chains = [chain_of(account.pk)]
            else:
                found = await session.scalars(
                    union(select(UsageChain.chain), select(UsageRecord.chain).distinct())
                )
                chains = sorted(found)
            checks = []
            settings = runtime.settings
            key = checkpoint_key(settings.usage.checkpoint_key, settings.auth.secret_key)
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("Verifying usage chains", total=len(chains))
                for chain in chains:
                    checks.append(await verify_chain(session, chain, key))
                    progress.advance(task)
            return checks, await unclean_stops(session)

    checks, gaps = run_account_work(work)
    for gap in gaps:
        err.print(f"[yellow]warning[/yellow]: {escape(gap.describe())}")
    broken = [check for check in checks if not check.ok]
    for check in broken:
        err.print(f"[red]{check.chain}[/red]: {check.problem} ({check.records} records read)")
    records = sum(check.records for check in checks)
    if broken:
        fail(f"{len(broken)} of {len(checks)} usage chain(s) do not verify")
    gapped = f"; {len(gaps)} instance(s) may have left calls unrecorded" if gaps else ""
    err.print(f"{len(checks)} usage chain(s), {records} records: all verify{gapped}.")


@usage_app.command("prune")
def usage_prune(
    apply: Annotated[
        bool, typer.Option("--apply", help="Prune; without it, only say what would go.")
    ] = False,
) -> None:
    """Fold usage records older than KAMIYO_USAGE_RAW_DAYS into daily totals, leaving a signed
    checkpoint in each chain so it still verifies, and drop daily totals older than
    KAMIYO_USAGE_DAILY_DAYS. A dry run unless --apply (pruned records cannot come back:
    back up first). `kamiyo worker` does this every KAMIYO_USAGE_PRUNE_EVERY_S."""

    async def work(runtime: Runtime) -> PruneReport:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("Pruning usage chains", total=None)

            def advance(result: ChainPrune, chains: int) -> None:
                progress.update(task, total=chains, advance=1)

            return await prune_usage(
                runtime.sessions, runtime.settings, apply=apply, on_chain=advance
            )

    report = run_account_work(work)
    for problem in report.problems:
        err.print(f"[red]{problem.chain}[/red]: left alone, {escape(problem.problem or '')}")
    before = f"{report.cutoffs.raw_from:%Y-%m-%d}"
    verb = "Pruned" if apply else "Would prune"
    err.print(
        f"{verb} {report.records} usage records from before {before} in "
        f"{sum(1 for c in report.chains if c.records)} of {len(report.chains)} chain(s) into "
        f"daily totals, and {report.daily_rows} daily row(s) from before "
        f"{report.cutoffs.daily_from:%Y-%m-%d}."
        + ("" if apply else " Nothing was changed: give --apply to prune.")
    )
    if report.problems:
        fail(f"{len(report.problems)} chain(s) were not pruned")


@usage_app.command("show")
def usage_show(
    email: Annotated[str, typer.Argument(help="Whose usage.")],
    by: Annotated[Breakdown, typer.Option(help="Group by day, tool or status.")] = Breakdown.DAY,
    days: Annotated[int, typer.Option(min=1, max=3660, help="How far back.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """An account's calls, grouped, with billable units and mean duration; then its receipts
    (calls paid per call with x402: payer, network, amount, transaction), newest first."""

    async def work(runtime: Runtime) -> tuple[list[UsageRow], list[PaidCall]]:
        async with runtime.sessions() as session:
            account = await accounts.find_account(session, email)
            if account is None:
                raise accounts.AccountError(f"no account for {email}")
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
            rows = await usage_breakdown(session, account.pk, since, by)
            return rows, await account_receipts(session, account.pk, since)

    rows, receipts = run_account_work(work)
    if as_json:
        shown = {
            "by": by.value,
            "days": days,
            "rows": [row.model_dump(mode="json") for row in rows],
            "receipts": [paid.as_json() for paid in receipts],
        }
        sys.stdout.write(json.dumps(shown, indent=2) + "\n")
        return
    table = Table()
    for column in (by.value.capitalize(), "Calls", "Units", "Mean ms"):
        table.add_column(column, justify="left" if column == by.value.capitalize() else "right")
    for row in rows:
        table.add_row(row.key, str(row.calls), str(row.cost_units), f"{row.mean_duration_ms:.2f}")
    console = stdout_console()
    console.print(table)
    if not receipts:
        console.print(f"No calls paid per call (x402) in the last {days} days.")
        return
    paid_table = Table(title=f"Receipts: calls paid per call (x402), last {days} days")
    for name in ("At (UTC)", "Tool", "Network", "Amount"):
        paid_table.add_column(name, justify="right" if name == "Amount" else "left")
    # Addresses and hashes stay whole, to be looked up: folded onto more lines, never cut short.
    paid_table.add_column("Payer", overflow="fold")
    paid_table.add_column("Transaction", overflow="fold")
    for paid in receipts:
        paid_table.add_row(
            f"{paid.at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
            paid.tool,
            f"{paid.network_name} ({paid.receipt.network})",
            paid.amount_usd,
            escape(paid.receipt.payer or "unknown"),
            escape(paid.receipt.transaction),
        )
    console.print(paid_table)


def register(app: typer.Typer) -> None:
    app.add_typer(usage_app, name="usage")

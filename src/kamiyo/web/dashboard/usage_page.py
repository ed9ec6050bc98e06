"""``/dashboard/usage``: calls per day (30 days) stacked by status, calls by tool, this
minute, day and month against the tier's limits, and the receipts of calls the account paid per
call (x402); ``/dashboard/usage.csv`` the same counts and every receipt of the 30 days.

The limits come from ``get_usage`` run through the pipeline as the account (so reading them
counts as one request, as it does for an agent); the per-day counts are read from the usage
records (``access.usage_report``), which is not a catalogue operation.
"""

import csv
import datetime as dt
import io
from collections import defaultdict
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.accounts import current_tier
from kamiyo.access.meter import UsageEvent
from kamiyo.access.receipts import PaidCall, account_receipts
from kamiyo.access.usage_report import DailyCount, StatusGroup, daily_counts, days_back
from kamiyo.access.usage_report import status_group as group_of
from kamiyo.service.answers import Answer
from kamiyo.service.catalogue import ToolName
from kamiyo.tiers import TIERS
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.charts import COLOURS, stacked_days
from kamiyo.web.dashboard.operations import run_as
from kamiyo.web.dashboard.viewer import Dashboard, Viewer

DAYS = 30
SHOWN_RECEIPTS = 100  # on the page, newest first; the CSV holds every one of the 30 days
# ``record`` says what a row is: a count of calls (``calls``) or one paid call (``receipt``).
CSV_COLUMNS = ("record", "day", "tool", "status", "calls")
CSV_RECEIPT_COLUMNS = ("at_utc", "network", "amount_usd", "payer", "transaction")


@dataclass
class Tally:
    """Calls in each status group, and their total."""

    groups: dict[str, int] = field(default_factory=lambda: dict.fromkeys(StatusGroup, 0))

    def add(self, status: str, calls: int) -> None:
        self.groups[group_of(status)] += calls

    @property
    def total(self) -> int:
        return sum(self.groups.values())


class UsagePage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def counts(
        self, viewer: Viewer, receipts: int | None = None
    ) -> tuple[list[dt.date], list[DailyCount], list[PaidCall]]:
        """The days, the counts per day, tool and status, and the newest ``receipts`` receipts
        (all of them when None), the calls the meter has not written yet included."""
        days = days_back(DAYS)
        gate = self.dashboard.state.gate
        held: AbstractAsyncContextManager[list[UsageEvent]] = (
            gate.meter.unwritten(viewer.account.pk)
            if isinstance(gate, AccountGate)
            else nullcontext([])
        )
        since = dt.datetime.combine(days[0], dt.time(), dt.UTC)
        async with held as unwritten, self.dashboard.database() as session:
            rows = await daily_counts(session, viewer.account.pk, days[0], unwritten)
            paid = await account_receipts(session, viewer.account.pk, since, unwritten, receipts)
        return days, rows, paid

    async def show(self, request: Request, viewer: Viewer) -> Response:
        # First, so that this page's own get_usage call is in the counts below.
        outcome = await run_as(self.dashboard, request, viewer, ToolName.GET_USAGE)
        report = outcome.structured if isinstance(outcome, Answer) else None
        problem = None if isinstance(outcome, Answer) else outcome.message
        async with self.dashboard.database() as session:
            tier = await current_tier(
                session, viewer.account, self.dashboard.onboarding.past_due_grace
            )
        days, rows, receipts = await self.counts(viewer, SHOWN_RECEIPTS)
        by_day: dict[dt.date, Tally] = defaultdict(Tally)
        by_tool: dict[str, Tally] = defaultdict(Tally)
        for row in rows:
            by_day[row.day].add(row.status, row.calls)
            by_tool[row.tool].add(row.status, row.calls)
        chart = stacked_days(
            "calls-per-day",
            f"Calls per day over the last {DAYS} days, by status",
            days,
            {day: tally.groups for day, tally in by_day.items()},
        )
        context = viewer.context(
            tier=tier,
            policy=TIERS[tier],
            report=report,
            problem=problem,
            chart=chart,
            colours=COLOURS,
            groups=list(StatusGroup),
            days=[(day, by_day.get(day, Tally())) for day in reversed(days)],
            tools=sorted(by_tool.items(), key=lambda item: (-item[1].total, item[0])),
            total=sum(tally.total for tally in by_day.values()),
            receipts=receipts,
            shown_receipts=SHOWN_RECEIPTS,
        )
        return render.page(request, "usage.html", context)

    async def csv(self, request: Request, viewer: Viewer) -> Response:
        days, rows, receipts = await self.counts(viewer)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
        writer.writerow(CSV_COLUMNS + CSV_RECEIPT_COLUMNS)
        blank = ("",) * len(CSV_RECEIPT_COLUMNS)
        for row in rows:
            writer.writerow(("calls", row.day.isoformat(), row.tool, row.status, row.calls, *blank))
        for paid in reversed(receipts):  # oldest first, as the counts
            at = paid.at.astimezone(dt.UTC)
            writer.writerow(
                (
                    "receipt",
                    at.date().isoformat(),
                    paid.tool,
                    "ok",  # only a call that succeeded is settled
                    "",  # counted in its day's row already
                    at.isoformat(timespec="seconds"),
                    paid.receipt.network,
                    paid.amount_usd,
                    paid.receipt.payer or "",
                    paid.receipt.transaction,
                )
            )
        name = f"kamiyo-usage-{days[0]:%Y%m%d}-{days[-1]:%Y%m%d}.csv"
        headers = {
            **render.headers(),
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)

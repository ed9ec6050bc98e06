"""``/dashboard/usage``: calls per day (30 days) stacked by status, calls by tool, and this
minute, day and month against the tier's limits; ``/dashboard/usage.csv`` the same counts.

The limits come from ``get_usage`` run through the pipeline as the account (so reading them
counts as one request, as it does for an agent); the per-day counts are read from the usage
records (``access.usage_report``), which is not a catalogue operation.
"""

import csv
import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.accounts import current_tier
from kamiyo.access.meter import UsageEvent
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
CSV_COLUMNS = ("day", "tool", "status", "calls")


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

    async def counts(self, viewer: Viewer) -> tuple[list[dt.date], list[DailyCount]]:
        days = days_back(DAYS)
        gate = self.dashboard.state.gate
        unwritten: list[UsageEvent] = (
            gate.meter.pending(viewer.account.pk) if isinstance(gate, AccountGate) else []
        )
        async with self.dashboard.database() as session:
            rows = await daily_counts(session, viewer.account.pk, days[0], unwritten)
        return days, rows

    async def show(self, request: Request, viewer: Viewer) -> Response:
        # First, so that this page's own get_usage call is in the counts below.
        outcome = await run_as(self.dashboard, request, viewer, ToolName.GET_USAGE)
        report = outcome.structured if isinstance(outcome, Answer) else None
        problem = None if isinstance(outcome, Answer) else outcome.message
        async with self.dashboard.database() as session:
            tier = await current_tier(
                session, viewer.account, self.dashboard.onboarding.past_due_grace
            )
        days, rows = await self.counts(viewer)
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
        )
        return render.page(request, "usage.html", context)

    async def csv(self, request: Request, viewer: Viewer) -> Response:
        days, rows = await self.counts(viewer)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow((row.day.isoformat(), row.tool, row.status, row.calls))
        name = f"kamiyo-usage-{days[0]:%Y%m%d}-{days[-1]:%Y%m%d}.csv"
        headers = {
            **render.headers(),
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)

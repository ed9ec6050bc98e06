"""``/admin``: the operators' page (accounts whose role is admin; ``kamiyo accounts set-role``).
Everyone else, signed in or not, gets the same 404 as for a page that does not exist.

The figures come from ``access.business_metrics``; the charts are SVG drawn here on the server
(bars as ``<rect>`` elements, each with a ``<title>`` and the same numbers in a table), so the
page needs no script.
"""

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from kamiyo.access.business_metrics import business_metrics
from kamiyo.payments.prices import usd
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.viewer import Dashboard, Viewer, not_found

CHART_WIDTH, CHART_HEIGHT = 600, 160


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float


def column_chart(points: list[tuple[str, int]]) -> list[Bar]:
    """Vertical bars for ``points`` in a CHART_WIDTH x CHART_HEIGHT box, scaled to the top."""
    if not points:
        return []
    top = max(value for _, value in points) or 1
    slot = CHART_WIDTH / len(points)
    return [
        Bar(
            label,
            value,
            x=round(n * slot + slot * 0.1, 2),
            y=round(CHART_HEIGHT - value / top * CHART_HEIGHT, 2),
            width=round(slot * 0.8, 2),
            height=round(value / top * CHART_HEIGHT, 2),
        )
        for n, (label, value) in enumerate(points)
    ]


class AdminPage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request, viewer: Viewer) -> Response:
        if not viewer.is_admin:
            return not_found(request, viewer)
        async with self.dashboard.database() as session:
            metrics = await business_metrics(session, self.dashboard.onboarding.past_due_grace)
        context = viewer.context(
            metrics=metrics,
            usd=usd,
            active_chart=column_chart(
                [(day.isoformat(), count) for day, count in metrics.daily_active]
            ),
            funnel_chart=column_chart([(step.name, step.accounts) for step in metrics.funnel]),
            chart_width=CHART_WIDTH,
            chart_height=CHART_HEIGHT,
        )
        return render.page(request, "admin.html", context)

"""The signed-in pages: the overview, and (in their own modules) keys, set-up and plan."""

from starlette.requests import Request
from starlette.responses import Response

from kamiyo.access.accounts import current_tier
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.viewer import Dashboard, Viewer


class OverviewPage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request, viewer: Viewer) -> Response:
        async with self.dashboard.sessions() as session:
            tier = await current_tier(
                session, viewer.account, self.dashboard.onboarding.past_due_grace
            )
        return render.page(request, "overview.html", viewer.context(tier=tier))

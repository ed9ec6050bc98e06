"""The signed-in pages: the overview, and (in their own modules) keys, set-up and plan."""

from starlette.requests import Request
from starlette.responses import Response

from kamiyo.access.accounts import current_tier
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.client_setup import EXAMPLE_PROMPTS, client_setup
from kamiyo.web.dashboard.viewer import Dashboard, Viewer


class OverviewPage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request, viewer: Viewer) -> Response:
        async with self.dashboard.database() as session:
            tier = await current_tier(
                session, viewer.account, self.dashboard.onboarding.past_due_grace
            )
        return render.page(request, "overview.html", viewer.context(tier=tier))


class SetupPage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request, viewer: Viewer) -> Response:
        """With the key placeholder: a key is filled in only on the page that creates it."""
        site = self.dashboard.settings.site
        setup = client_setup(site) if site.public_url else None
        return render.page(
            request, "setup.html", viewer.context(setup=setup, prompts=EXAMPLE_PROMPTS)
        )

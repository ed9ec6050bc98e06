"""The dashboard's routes, for ``create_app``'s route list, and its static files."""

from mcp.server.mcpserver import MCPServer
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from kamiyo.web.dashboard.admin_page import AdminPage
from kamiyo.web.dashboard.alert_pages import AlertPages
from kamiyo.web.dashboard.bundle_download import BundleDownload
from kamiyo.web.dashboard.client_pages import ClientPages
from kamiyo.web.dashboard.key_pages import KeyPages
from kamiyo.web.dashboard.login import LoginPages
from kamiyo.web.dashboard.pages import OverviewPage, SetupPage
from kamiyo.web.dashboard.plan_page import PlanPage
from kamiyo.web.dashboard.report_pages import ReportPages
from kamiyo.web.dashboard.usage_page import UsagePage
from kamiyo.web.dashboard.viewer import Dashboard


def routes(dashboard: Dashboard, server: MCPServer) -> list[BaseRoute]:
    """``server``: the app's MCP server, whose prompts the ``.mcpb`` download lists."""
    login = LoginPages(dashboard)
    signed_in = dashboard.signed_in
    key_pages = KeyPages(dashboard)
    plan = PlanPage(dashboard)
    usage = UsagePage(dashboard)
    alerts = AlertPages(dashboard)
    clients = ClientPages(dashboard)
    # Plain Routes (no Mount), so that the access log sees their {token} and hides it.
    return [
        Route("/login", login.form, methods=["GET"]),
        Route("/login", login.request_link, methods=["POST"]),
        Route("/login/{token}", login.link_form, methods=["GET"]),
        Route("/login/{token}", login.use_link, methods=["POST"]),
        Route("/logout", signed_in(login.logout), methods=["POST"]),
        Route("/dashboard", signed_in(OverviewPage(dashboard).show), methods=["GET"]),
        Route("/dashboard/keys", signed_in(key_pages.list_page), methods=["GET"]),
        Route("/dashboard/keys", signed_in(key_pages.create), methods=["POST"]),
        Route("/dashboard/keys/{prefix}/revoke", signed_in(key_pages.revoke), methods=["POST"]),
        Route("/dashboard/setup", signed_in(SetupPage(dashboard).show), methods=["GET"]),
        Route("/dashboard/plan", signed_in(plan.show), methods=["GET"]),
        Route("/dashboard/plan/checkout", signed_in(plan.checkout), methods=["POST"]),
        Route("/dashboard/plan/portal", signed_in(plan.portal), methods=["POST"]),
        # Usage, alerts and the .mcpb download (issue 15).
        Route("/dashboard/usage", signed_in(usage.show), methods=["GET"]),
        Route("/dashboard/usage.csv", signed_in(usage.csv), methods=["GET"]),
        Route("/dashboard/alerts", signed_in(alerts.list_page), methods=["GET"]),
        Route("/dashboard/alerts", signed_in(alerts.create), methods=["POST"]),
        Route("/dashboard/alerts/{alert_id}/delete", signed_in(alerts.delete), methods=["POST"]),
        Route("/dashboard/alerts/{alert_id}/test", signed_in(alerts.test), methods=["POST"]),
        Route(
            "/dashboard/setup/kamiyo.mcpb",
            signed_in(BundleDownload(server).download),
            methods=["GET"],
        ),
        # The MCP hosts the account let in through OAuth.
        Route("/dashboard/clients", signed_in(clients.list_page), methods=["GET"]),
        Route("/dashboard/clients/revoke", signed_in(clients.revoke), methods=["POST"]),
        *_report_and_admin_routes(dashboard),
    ]


def _report_and_admin_routes(dashboard: Dashboard) -> list[BaseRoute]:
    """Reports (and their share links, ``/r/{token}``: hidden in the access log like every
    ``{token}``) and the operators' page."""
    signed_in, reports = dashboard.signed_in, ReportPages(dashboard)
    report = "/dashboard/reports/{report_id:int}"
    return [
        Route("/dashboard/reports", signed_in(reports.list_page), methods=["GET"]),
        Route("/dashboard/reports", signed_in(reports.create), methods=["POST"]),
        Route(report, signed_in(reports.show), methods=["GET"]),
        Route(f"{report}/share", signed_in(reports.share), methods=["POST"]),
        Route(f"{report}/unshare", signed_in(reports.unshare), methods=["POST"]),
        Route("/r/{token}", reports.public, methods=["GET"]),
        Route("/admin", signed_in(AdminPage(dashboard).show, hidden=True), methods=["GET"]),
    ]


def static_files() -> Mount:
    """``/static/`` from the package's ``web/static`` folder (the dashboard's files are under
    ``dashboard/``)."""
    return Mount("/static", StaticFiles(packages=[("kamiyo.web", "static")]), name="static")

"""``/dashboard/reports`` (make a report, list them), ``/dashboard/reports/{id}`` (the owner's
page, share and unshare) and ``/r/{token}`` (a shared report, for anyone with the link).

A refusal (a tier without the tool, a limit) or a failure (bad arguments) is shown on the
list page with the gate's or the tool's own sentence and the REST API's status code.
"""

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kamiyo.access.gate import Refusal
from kamiyo.db.reports import SharedReport
from kamiyo.service.answers import Failure
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.web.dashboard import render, report_store
from kamiyo.web.dashboard.viewer import Dashboard, Viewer, read_form
from kamiyo.web.rest import FAILURE_STATUS, REFUSAL_STATUS

log = logging.getLogger(__name__)

REPORTS_PAGE = "/dashboard/reports"
# The form fields each kind of report takes (the rest of the form is ignored).
FIELDS = {
    ToolName.ASSESS_PROTOCOL_RISK: ("protocol_name", "chain"),
    ToolName.CHECK_WALLET_INTERACTIONS: ("wallet_address", "chain"),
}


class ReportPages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def list_page(
        self, request: Request, viewer: Viewer, *, error: str | None = None, status: int = 200
    ) -> Response:
        async with self.dashboard.database() as session:
            reports = await report_store.list_reports(session, viewer.account.pk)
        context = viewer.context(
            reports=reports,
            error=error,
            kinds={name.value: CATALOGUE[name] for name in report_store.REPORT_KINDS},
            is_shared=report_store.is_shared,
            subject=subject,
        )
        return render.page(request, "reports.html", context, status=status)

    async def create(self, request: Request, viewer: Viewer) -> Response:
        form = await read_form(request)
        chosen = form.get("operation")
        try:
            operation = ToolName(chosen) if isinstance(chosen, str) else None
        except ValueError:
            operation = None
        if operation not in FIELDS:
            return await self.list_page(
                request, viewer, error="Choose a protocol risk report or a wallet screen.",
                status=400,
            )  # fmt: skip
        given = {}
        for name in FIELDS[operation]:
            value = form.get(name)
            text = value.strip() if isinstance(value, str) else ""
            given[name] = text or None  # an empty field is one not given
        peer = request.client.host if request.client else "dashboard"
        made = await report_store.run_report(
            self.dashboard.state, viewer.account, operation, given, peer
        )
        if isinstance(made, Refusal):
            refused = await self.list_page(
                request, viewer, error=f"Refused: {made.message}",
                status=REFUSAL_STATUS[made.reason],
            )  # fmt: skip
            if made.retry_after_s is not None:
                refused.headers["Retry-After"] = str(made.retry_after_s)
            return refused
        if isinstance(made, Failure):
            return await self.list_page(
                request, viewer, error=f"No report was made: {made.message}",
                status=FAILURE_STATUS[made.kind],
            )  # fmt: skip
        log.info("report %s (%s) made by account %s", made.pk, operation, viewer.account.pk)
        return RedirectResponse(f"{REPORTS_PAGE}/{made.pk}", 303, headers=render.headers())

    async def show(self, request: Request, viewer: Viewer, *, link: str | None = None) -> Response:
        async with self.dashboard.database() as session:
            report = await report_store.owned_report(
                session, viewer.account.pk, request.path_params["report_id"]
            )
        if report is None:
            return self._missing(request, viewer)
        context = viewer.context(
            report=report,
            kind=report_store.REPORT_KINDS[ToolName(report.operation)],
            answer=report.answer,
            subject=subject(report),
            shared=report_store.is_shared(report),
            link=link,
        )
        return render.page(request, "report.html", context)

    async def share(self, request: Request, viewer: Viewer) -> Response:
        async with self.dashboard.database() as session:
            report = await report_store.owned_report(
                session, viewer.account.pk, request.path_params["report_id"]
            )
            if report is None:
                return self._missing(request, viewer)
            token = report_store.share(report)
            await session.commit()
        log.info("report %s shared by account %s", report.pk, viewer.account.pk)
        public_url = self.dashboard.settings.site.public_url or ""
        # The link is shown on this answer only (no-store): the database keeps its hash.
        return await self.show(request, viewer, link=f"{public_url.rstrip('/')}/r/{token}")

    async def unshare(self, request: Request, viewer: Viewer) -> Response:
        async with self.dashboard.database() as session:
            report = await report_store.owned_report(
                session, viewer.account.pk, request.path_params["report_id"]
            )
            if report is None:
                return self._missing(request, viewer)
            if report_store.revoke_share(report):
                await session.commit()
                log.info("report %s unshared by account %s", report.pk, viewer.account.pk)
        return RedirectResponse(f"{REPORTS_PAGE}/{report.pk}", 303, headers=render.headers())

    async def public(self, request: Request) -> Response:
        """``/r/{token}``: no session needed; 404 for no such link, 410 once revoked."""
        try:
            async with self.dashboard.database() as session:
                found = await report_store.find_shared(session, request.path_params["token"])
        except Exception:
            log.exception("a shared report could not be read")
            return render.message(
                request, 500, "Something went wrong", "Something went wrong on our side.",
                link_page=True,
            )  # fmt: skip
        if found is None:
            return render.message(
                request, 404, "No such report", "This link does not lead to a report.",
                link_page=True,
            )  # fmt: skip
        if found.report is None:
            return render.message(
                request, 410, "This report is no longer shared",
                "Its owner has stopped sharing it.", link_page=True,
            )  # fmt: skip
        report = found.report
        context = {
            "report": report,
            "kind": report_store.REPORT_KINDS[ToolName(report.operation)],
            "answer": report.answer,
            "subject": subject(report),
        }
        # Nobody's session: no-store, no-referrer (the link is the credential), noindex.
        return render.page(request, "report_public.html", context, link_page=True)

    def _missing(self, request: Request, viewer: Viewer) -> Response:
        # Another account's report looks the same as no report.
        return render.message(
            request, 404, "No such report", "This account has no report with that number.",
            context=viewer.context(),
        )  # fmt: skip


def subject(report: SharedReport) -> str:
    """What the report is about, in a few words: the protocol or the address (and chain)."""
    named = report.arguments.get("protocol_name") or report.arguments.get("wallet_address", "?")
    chain = report.arguments.get("chain")
    return f"{named} on {chain}" if chain else str(named)

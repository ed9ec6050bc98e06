"""``/dashboard/alerts``: the account's alert rules with their delivery logs, a form to make
one (its signing secret shown once), and deleting and testing one.

Every action is the catalogue's operation (list_alerts, create_alert, delete_alert,
test_alert) run through the pipeline as the account (``operations.run_as``): the tier, the
rule cap and the arguments are checked there, and its refusals and errors are shown as they
are. Only the page itself skips list_alerts for a tier that has no alerts (it would be a
refusal recorded on every visit) and says which tier unlocks them.

htmx's delete and test get a fragment, always with 200 (htmx does not swap an error answer);
the fragment says what happened. A plain form post gets a redirect back, or the page with the
error and its status.
"""

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kamiyo.access.accounts import current_tier
from kamiyo.alerts.manage import MAX_NAME_LENGTH
from kamiyo.intel.attack_types import AttackType
from kamiyo.service.answers import Answer, Outcome
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.tiers import TIERS
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.operations import run_as, status_of
from kamiyo.web.dashboard.viewer import Dashboard, Viewer, read_form

log = logging.getLogger(__name__)

ALERTS_PAGE = "/dashboard/alerts"
# Lists in the form's text fields: chains, attack types and addresses hold no spaces, so any
# space or comma separates them; a protocol's name may ("Euler Finance"): commas or lines.
SPACED_LISTS = ("chains", "attack_types", "addresses")
LINE_LISTS = ("protocols",)
FORM_FIELDS = ("name", "webhook_url", "min_loss_usd", *SPACED_LISTS, *LINE_LISTS)


def _items(value: str, pattern: str) -> list[str]:
    return [item.strip() for item in re.split(pattern, value) if item.strip()]


def create_arguments(form: dict[str, str]) -> dict[str, Any]:
    """create_alert's arguments from the form's text (the operation checks them)."""
    filters: dict[str, Any] = {}
    for name in SPACED_LISTS:
        if items := _items(form[name], r"[,\s]+"):
            filters[name] = items
    for name in LINE_LISTS:
        if items := _items(form[name], r"[,\r\n]+"):
            filters[name] = items
    if loss := form["min_loss_usd"].replace(",", "").replace("_", ""):
        try:
            filters["min_loss_usd"] = float(loss)
        except ValueError:
            filters["min_loss_usd"] = loss  # the operation says what is wrong with it
    arguments: dict[str, Any] = {"filters": filters}
    for name in ("name", "webhook_url"):
        if form[name]:
            arguments[name] = form[name]
    return arguments


def with_host(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as the page shows it: the webhook's host only (a hook's path often carries a
    token of the receiver's)."""
    url = rule.get("webhook_url")
    return {**rule, "webhook_host": urlsplit(url).hostname if url else None}


def said(answer: dict[str, Any], *, deleted: bool) -> str:
    """A delete's or a test's answer for a person (the operation's message speaks to agents,
    naming the tools to call next)."""
    if deleted:
        cancelled = answer["cancelled_deliveries"]
        plural = "y" if cancelled == 1 else "ies"
        pending = f"; {cancelled} pending deliver{plural} will not be sent" if cancelled else ""
        return f"Deleted the alert rule {answer['alert_id']}{pending}."
    return (
        f"A signed test delivery ({answer['delivery_id']}, event alert.test) is queued for the "
        "rule's webhook and is sent within seconds: reload the page to see it in the log."
    )


class AlertPages:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.needs = CATALOGUE[ToolName.LIST_ALERTS].tier

    async def show(
        self,
        request: Request,
        viewer: Viewer,
        *,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
        form: dict[str, str] | None = None,
    ) -> Response:
        async with self.dashboard.database() as session:
            tier = await current_tier(
                session, viewer.account, self.dashboard.onboarding.past_due_grace
            )
        context = viewer.context(
            tier=tier,
            locked=not tier.includes(self.needs),
            needs=self.needs,
            needs_rules=TIERS[self.needs].alert_rules,
            rules=[],
            cap=TIERS[tier].alert_rules,
            error=error,
            notice=notice,
            form=form or dict.fromkeys(FORM_FIELDS, ""),
            attack_types=[t.value for t in AttackType],
            max_name=MAX_NAME_LENGTH,
        )
        if not context["locked"]:
            listed = await run_as(self.dashboard, request, viewer, ToolName.LIST_ALERTS)
            if isinstance(listed, Answer):
                context["rules"] = [with_host(rule) for rule in listed.structured["alerts"]]
            else:
                context["error"] = " ".join(filter(None, (error, listed.message)))
                status = max(status, status_of(listed))
        return render.page(request, "alerts.html", context, status=status)

    async def list_page(self, request: Request, viewer: Viewer) -> Response:
        return await self.show(request, viewer)

    async def create(self, request: Request, viewer: Viewer) -> Response:
        posted = await read_form(request)
        form = {}
        for name in FORM_FIELDS:
            value = posted.get(name)
            form[name] = value.strip() if isinstance(value, str) else ""
        outcome = await run_as(
            self.dashboard, request, viewer, ToolName.CREATE_ALERT, create_arguments(form)
        )
        if not isinstance(outcome, Answer):
            return await self.show(
                request,
                viewer,
                error=f"No alert rule was made. {outcome.message}",
                status=status_of(outcome),
                form=form,
            )
        created = outcome.structured
        rule = with_host(created["alert"])
        log.info(
            "alert rule %s created on the dashboard for account %s",
            rule["alert_id"],
            viewer.account.pk,
        )
        # The only page that ever shows the secret: no-store (render.headers) keeps it out of
        # caches and the back button's history.
        return render.page(
            request, "alert_created.html", viewer.context(created=created, rule=rule)
        )

    async def delete(self, request: Request, viewer: Viewer) -> Response:
        alert_id = request.path_params["alert_id"]
        outcome = await run_as(
            self.dashboard, request, viewer, ToolName.DELETE_ALERT, {"alert_id": alert_id}
        )
        if isinstance(outcome, Answer):
            log.info("alert rule %s deleted on the dashboard", alert_id)
        return await self._answer(request, viewer, alert_id, outcome, deleted=True)

    async def test(self, request: Request, viewer: Viewer) -> Response:
        alert_id = request.path_params["alert_id"]
        outcome = await run_as(
            self.dashboard, request, viewer, ToolName.TEST_ALERT, {"alert_id": alert_id}
        )
        return await self._answer(request, viewer, alert_id, outcome, deleted=False)

    async def _answer(
        self, request: Request, viewer: Viewer, alert_id: str, outcome: Outcome, *, deleted: bool
    ) -> Response:
        """What a delete or a test answers: for htmx, the fragment that replaces the rule
        (deleted) or fills its notice; otherwise the page, or a redirect to it."""
        if isinstance(outcome, Answer):
            ok, message = True, said(outcome.structured, deleted=deleted)
        else:
            ok, message = False, outcome.message
        if request.headers.get("hx-request") == "true":
            context = viewer.context(alert_id=alert_id, message=message, ok=ok)
            fragment = "alert_deleted.html" if ok and deleted else "alert_notice.html"
            answer = render.page(request, fragment, context)
            if not ok and deleted:  # keep the rule on the page; say why below it
                answer.headers.update({"HX-Retarget": f"#notice-{alert_id}"})
            return answer
        if ok and deleted:
            return RedirectResponse(ALERTS_PAGE, 303, headers=render.headers())
        if ok:
            return await self.show(request, viewer, notice=message)
        return await self.show(request, viewer, error=message, status=status_of(outcome))

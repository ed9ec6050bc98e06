"""The alert-rule operations: create_alert, list_alerts, delete_alert, test_alert.

Who owns what a call makes or sees:

- a subscriber's call (team and enterprise tiers): the account. Its rules count against the
  tier's cap (``TierPolicy.alert_rules``). A rule tells the account's MCP sessions that
  subscribed to its resource (``kamiyo://alerts/<id>``) of each match, and POSTs it to its
  webhook if it has one.
- a call paid on its own (x402): the payer's address, as the payment verified it. A paid
  ``create_alert`` buys a webhook monitor for ``MONITOR_DAYS`` days; ``list_alerts``,
  ``delete_alert`` and ``test_alert`` carry a small price of their own, so the payment that
  identifies the payer is one the chain verified: nobody can read or delete a payer's
  monitors by naming an address. A monitor needs a webhook: a payer has no sessions to tell.

Every answer says what happened and what to do next in ``message``. Requests that cannot be
met (a webhook URL in the wrong form, a likely misspelled protocol, the tier's cap) are the
caller's to change: they come back as invalid arguments naming the field, and nothing is
charged for them.
"""

import datetime as dt
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from kamiyo.alerts import manage
from kamiyo.alerts.manage import Owner, Rule, RuleError
from kamiyo.alerts.rules import AlertFilters
from kamiyo.alerts.webhook_url import MAX_URL_LENGTH, WebhookUrlError, check_webhook_url
from kamiyo.intel.models import QueryModel
from kamiyo.intel.scope import NotFoundError
from kamiyo.payments.prices import Price
from kamiyo.service.answers import ShownOnce
from kamiyo.service.own import NoArguments
from kamiyo.service.state import Job
from kamiyo.tiers import TIERS, Tier, next_tier_for_alert_rules

# How long one x402 payment keeps a monitor watching.
MONITOR_DAYS = 30
# What it costs (the catalogue's price for create_alert): $5.00 sits between a subscription's
# cost per rule (team: $99 for 3 rules, $33 each; enterprise: $299 for 100, $3 each), so an
# agent needing one or two monitors pays less than a team subscription and a bulk user still
# does better subscribing; it also covers 30 days of deliveries and their retries.
MONITOR_PRICE = Price(5_000_000)
# What a payer pays to list, test or delete its monitors: the payment is what proves who asks.
# A cent covers settling it (relayer gas on Base, fee payer on Solana) and no more.
MONITOR_CALL_PRICE = Price(10_000)
ALERT_ID_LENGTH = 64  # longer than any id we issue (alr_ + 22), so a typo is "not found"

_WEBHOOK_DESCRIPTION = (
    "HTTPS URL (plain http outside production) that gets a signed POST per matching incident "
    "(Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature headers). Optional "
    "for an account: without it, matches are told only to the account's MCP sessions that "
    "subscribe to the rule's resource (kamiyo://alerts/<alert_id>). Required for a monitor "
    "paid per call."
)


class CreateAlertQuery(QueryModel):
    filters: AlertFilters = Field(
        description="What to be told of; every filter given must hold, and {} means every "
        "new or changed incident. Protocols are matched by any spelling of their name."
    )
    webhook_url: str | None = Field(
        default=None, max_length=MAX_URL_LENGTH, description=_WEBHOOK_DESCRIPTION
    )
    name: str | None = Field(
        default=None,
        max_length=manage.MAX_NAME_LENGTH,
        description="A name to know the rule by; default: what it watches.",
    )

    @field_validator("filters", mode="wrap")
    @classmethod
    def _first_problem(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """The first problem of the filters, and how many more: a hundred unknown chains
        would otherwise be a hundred sentences, each listing every chain."""
        try:
            return handler(value)
        except ValidationError as exc:
            problems = exc.errors(include_url=False, include_input=False)
            first = problems[0]
            where = ".".join(str(part) for part in first["loc"])
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            said = first["msg"].removeprefix("Value error, ")
            raise PydanticCustomError(
                "invalid_filters", (f"{where}: " if where else "") + said + more
            ) from None


class AlertIdQuery(QueryModel):
    alert_id: str = Field(
        min_length=1, max_length=ALERT_ID_LENGTH, description="The rule's id (alr_…)."
    )


class CreatedAlert(ShownOnce):
    alert: Rule
    secret: str | None = Field(
        description="The webhook signing secret (whsec_…), shown this once: store it now; it "
        "is not shown again. Verify each delivery's webhook-signature with it. None: the rule "
        "has no webhook."
    )
    notes: list[str] = Field(default_factory=list, description="Protocols with no incident yet.")
    message: str = Field(description="What happened and what to do next.")

    def for_replay(self) -> "CreatedAlert":
        """A retried payment is answered without the secret (it is stored for no replay)."""
        withheld = (
            " The signing secret was shown only in the first answer to this payment; if it "
            "was lost, delete the rule and create another."
        )
        return self.model_copy(update={"secret": None, "message": self.message + withheld})


class AlertList(BaseModel):
    alerts: list[Rule] = Field(description="Your rules, oldest first, with their delivery log.")
    cap: int | None = Field(description="Rules your tier may keep; none for monitors (paid).")
    message: str = Field(description="What the list holds and what to do next.")


class DeletedAlert(BaseModel):
    alert_id: str
    cancelled_deliveries: int = Field(description="Deliveries still pending, now not sent.")
    message: str


class QueuedTest(BaseModel):
    alert_id: str
    delivery_id: str = Field(description="The test delivery's webhook-id (msg_…).")
    status: str = Field(description="pending: the delivery worker sends it within seconds.")
    message: str


def refused(field: str, message: str) -> ValidationError:
    """A request the caller must change, as the pipeline answers bad arguments (field: why).

    No format context is given, so braces in ``message`` are kept as they are."""
    detail: InitErrorDetails = {
        "type": PydanticCustomError("alert_rule", message),
        "loc": tuple(field.split(".")),
        "input": None,
    }
    return ValidationError.from_exception_data("alert rule", [detail])


def _owner(job: Job) -> Owner:
    grant = job.grant
    if grant.payment is not None:
        if not grant.payment.payer:
            raise refused("payment", "this payment names no payer to own the rule; pay by x402")
        return Owner.of_payer(grant.payment.payer)
    if grant.account_pk is None:
        raise refused(
            "credential",
            "alert rules belong to an account or to an x402 payer: call with an API key of a "
            "team or enterprise account, or pay for the call",
        )
    return Owner(account_pk=grant.account_pk)


def _tier(job: Job) -> Tier | None:
    """The subscription tier the call runs on (None: paid per call, or the open gate)."""
    values = {t.value for t in Tier}
    return Tier(job.grant.tier) if job.grant.tier in values else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


async def _check_cap(job: Job, owner: Owner) -> int | None:
    """Refuse a subscriber's rule past the tier's cap; the cap (None: a paid monitor)."""
    tier = _tier(job)
    if tier is None:  # paid per call: each monitor is bought on its own
        return None
    cap = TIERS[tier].alert_rules
    held = await manage.count_rules(job.session, owner)
    if held < cap:
        return cap
    better = next_tier_for_alert_rules(tier, held)
    raise_it = (
        f"upgrade to {better.value} ({TIERS[better].alert_rules} rules)"
        if better is not None
        else "no tier keeps more"
    )
    if cap == 0:
        raise refused("tier", f"the {tier.value} tier keeps no alert rules; {raise_it}")
    raise refused(
        "tier",
        f"the {tier.value} tier keeps {cap} alert rules and this account has {held}; delete one "
        f"(delete_alert) or {raise_it}",
    )


async def create_alert(job: Job, query: CreateAlertQuery) -> CreatedAlert:
    owner = _owner(job)
    paid = job.grant.payment is not None
    url = None
    if query.webhook_url is not None:
        try:
            url = check_webhook_url(query.webhook_url, require_https=job.state.settings.production)
        except WebhookUrlError as exc:
            raise refused("webhook_url", str(exc)) from None
    elif paid:
        raise refused(
            "webhook_url",
            "a monitor paid per call is told through its webhook (a payer has no MCP session "
            "to tell): give webhook_url",
        )
    cap = await _check_cap(job, owner)
    try:
        keys, notes = await manage.resolve_protocols(job.session, query.filters.protocols)
    except RuleError as exc:
        raise refused(exc.field, str(exc)) from None
    now = _now()
    expires_at = now + dt.timedelta(days=MONITOR_DAYS) if paid else None
    filters = query.filters.model_copy(update={"protocols": keys})
    rule, secret = await manage.create_rule(
        job.session,
        owner,
        query.name,
        filters,
        url,
        now,
        secret_key=job.state.settings.auth.secret_key,
        expires_at=expires_at,
    )
    view = manage.view(rule, now)
    await job.session.commit()
    return CreatedAlert(
        alert=view, secret=secret, notes=notes, message=_created_message(view, cap, paid)
    )


def _created_message(rule: Rule, cap: int | None, paid: bool) -> str:
    made = f"Created alert rule {rule.alert_id}."
    if rule.webhook_url is not None:
        told = (
            " Matching incidents are POSTed to its webhook, signed with the secret in this "
            "answer: store it now; it is not shown again. Call test_alert to send a test."
        )
    else:
        told = (
            " It has no webhook: subscribe to "
            f"{rule.resource} (resources/subscribe, or subscriptions/listen) to be told in "
            "this or any session of your account when a new incident matches; reading it or "
            "list_alerts shows the matches."
        )
    if not paid and rule.webhook_url is not None:
        told += f" Sessions of your account may also subscribe to {rule.resource}."
    if paid:
        assert rule.expires_at is not None
        told += (
            f" This monitor watches until {rule.expires_at:%Y-%m-%d %H:%M} UTC ({MONITOR_DAYS} "
            "days, paid). Its owner is the paying address: list_alerts, test_alert and "
            "delete_alert are paid calls too, so the payment proves who asks."
        )
    elif cap is not None:
        told += f" Your tier keeps up to {cap} rules."
    return made + told


async def list_alerts(job: Job, query: NoArguments) -> AlertList:
    owner = _owner(job)
    rules = await manage.list_rules(job.session, owner, _now())
    tier = _tier(job)
    cap = TIERS[tier].alert_rules if tier is not None else None
    if not rules:
        message = "You have no alert rules; create_alert makes one."
    else:
        expired = sum(rule.status == "expired" for rule in rules)
        message = (
            f"{len(rules)} alert rule(s)"
            + (f", {expired} expired (no longer matched; delete them)" if expired else "")
            + ". Each lists its newest deliveries; delete_alert removes a rule, test_alert "
            "sends a test delivery."
        )
    return AlertList(alerts=rules, cap=cap, message=message)


async def read_alert(job: Job, alert_id: str) -> Rule:
    """One of the caller's rules with its log (its resource, ``kamiyo://alerts/<id>``)."""
    if job.grant.payment is not None or job.grant.account_pk is None:
        raise refused(
            "credential",
            "an alert rule's resource is read with the API key of the account that made it "
            "(a monitor paid per call: list_alerts)",
        )
    found = await manage.list_rules(
        job.session, Owner(account_pk=job.grant.account_pk), _now(), alert_id
    )
    if not found:
        raise NotFoundError(
            f"No alert rule {manage.shown(alert_id)} of yours; list_alerts shows your rules."
        )
    return found[0]


async def delete_alert(job: Job, query: AlertIdQuery) -> DeletedAlert:
    owner = _owner(job)
    cancelled = await manage.delete_rule(job.session, owner, query.alert_id)
    await job.session.commit()
    pending = f"; {cancelled} pending deliveries will not be sent" if cancelled else ""
    return DeletedAlert(
        alert_id=query.alert_id,
        cancelled_deliveries=cancelled,
        message=f"Deleted alert rule {query.alert_id}{pending}. list_alerts shows the rest.",
    )


async def queue_test_alert(job: Job, query: AlertIdQuery) -> QueuedTest:
    owner = _owner(job)
    try:
        delivery_id = await manage.queue_test(job.session, owner, query.alert_id, _now())
    except RuleError as exc:
        raise refused(exc.field, str(exc)) from None
    await job.session.commit()
    return QueuedTest(
        alert_id=query.alert_id,
        delivery_id=delivery_id,
        status="pending",
        message=f"Queued a signed test delivery ({delivery_id}, event alert.test) to the rule's "
        "webhook; it is sent within seconds. Call list_alerts to see its status, attempts and "
        "the receiver's response code.",
    )

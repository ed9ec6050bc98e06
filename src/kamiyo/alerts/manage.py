"""Alert rules as their owners manage them: create, list with the delivery log, delete, test.

A rule belongs to an account, or (a monitor bought with one x402 payment) to the payer's
address; every function takes the owner and reaches only that owner's rules, so another
owner's rule id is "not found", never "forbidden" (which would confirm that it exists).
Sending is the alerts worker's: ``queue_test`` only writes a pending delivery it will claim.
The caller commits.
"""

import datetime as dt
import secrets as random_ids
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import ColumnElement, Select, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.alerts import secrets
from kamiyo.alerts.events import RESOURCE_TEMPLATE, TEST_EVENT, webhook_body
from kamiyo.alerts.rules import AlertFilters
from kamiyo.chains import normalize_address
from kamiyo.db.alerts import AlertDelivery, AlertRule
from kamiyo.db.bounds import text_width
from kamiyo.db.tables import ProtocolRow
from kamiyo.intel import resolver
from kamiyo.intel.models import MAX_QUERY_LENGTH
from kamiyo.intel.names import name_key
from kamiyo.intel.scope import NotFoundError

RULE_ID_PREFIX = "alr_"
DELIVERY_ID_PREFIX = "msg_"
DELIVERY_LOG_SIZE = 20  # the newest deliveries each rule lists
MAX_NAME_LENGTH = text_width(AlertRule.name)
SHOWN_CHARS = 40  # of a caller's text repeated in a message


def new_delivery_id() -> str:
    """A webhook-id: the same on every retry of one delivery, so receivers can dedupe."""
    return DELIVERY_ID_PREFIX + random_ids.token_urlsafe(16)


class RuleError(ValueError):
    """A rule request that cannot be met; ``field`` is what to change, the message how."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose rules: an account, or an x402 payer's address (exactly one of the two)."""

    account_pk: int | None = None
    payer: str | None = None

    @classmethod
    def of_payer(cls, payer: str) -> "Owner":
        """The payer as its rules are kept: an address in the store's form (EVM lower case),
        so the same wallet is one owner however the facilitator spelled it."""
        try:
            return cls(payer=normalize_address(payer))
        except ValueError:
            return cls(payer=payer.strip())

    def condition(self) -> ColumnElement[bool]:
        if self.account_pk is not None:
            return AlertRule.account_pk == self.account_pk
        return (AlertRule.payer == self.payer) & AlertRule.account_pk.is_(None)


class Delivery(BaseModel):
    """One entry of a rule's delivery log."""

    id: str = Field(description="The webhook-id header (msg_…), the same on every retry.")
    event: str = Field(description="incident.created, incident.updated or alert.test.")
    incident_id: str | None
    status: str = Field(
        description="A webhook's: pending, delivered, failed (every attempt spent) or cancelled; "
        "notified: a rule without a webhook told the account's subscribed MCP sessions."
    )
    attempts: int
    last_error: str | None
    response_code: int | None = Field(description="The receiver's last HTTP status.")
    created_at: dt.datetime
    delivered_at: dt.datetime | None


class Rule(BaseModel):
    """A rule as its owner sees it."""

    alert_id: str
    name: str
    filters: AlertFilters = Field(description="Protocols are shown as their name keys.")
    webhook_url: str | None = Field(
        description="Where matches are POSTed; none: the account's MCP sessions only."
    )
    resource: str = Field(
        description="This rule's resource: subscribe to it (resources/subscribe, or "
        "subscriptions/listen) to be told in an MCP session of each match; read it for the "
        "rule and its log."
    )
    status: Literal["active", "disabled", "expired"]
    disabled_reason: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None = Field(description="A monitor's end; none: no end.")
    deliveries: list[Delivery] = Field(
        default_factory=list, description=f"The newest {DELIVERY_LOG_SIZE}, newest first."
    )


def view(rule: AlertRule, now: dt.datetime, deliveries: list[Delivery] | None = None) -> Rule:
    status: Literal["active", "disabled", "expired"] = "active"
    if rule.expires_at is not None and rule.expires_at <= now:
        status = "expired"
    elif not rule.enabled:
        status = "disabled"
    return Rule(
        alert_id=rule.id,
        name=rule.name,
        filters=AlertFilters.model_validate(rule.filters),
        webhook_url=rule.webhook_url,
        resource=RESOURCE_TEMPLATE.format(alert_id=rule.id),
        status=status,
        disabled_reason=rule.disabled_reason,
        created_at=rule.created_at,
        expires_at=rule.expires_at,
        deliveries=deliveries or [],
    )


def shown(text: str) -> str:
    """A caller's text for a message: escaped (never a control character) and cut short."""
    cut = text[:SHOWN_CHARS]
    return ascii(cut) + ("…" if len(text) > SHOWN_CHARS else "")


async def resolve_protocols(session: AsyncSession, names: list[str]) -> tuple[list[str], list[str]]:
    """The name keys rules match protocols by, and notes on names no incident goes by yet.

    A name one or two edits from a known one ("eulr") is refused with the names it may mean:
    a rule watching a typo would stay silent forever. A name with no near miss is kept (a
    protocol with no incident yet is what a watcher may well want), and the note says so.
    """
    keys: list[str] = []
    notes: list[str] = []
    for name in names:
        if len(name) > MAX_QUERY_LENGTH:
            raise RuleError("filters.protocols", f"a name is longer than {MAX_QUERY_LENGTH}")
        key = name_key(name)
        if not key:
            raise RuleError("filters.protocols", f"{shown(name)} has no letters or digits")
        if key in keys:
            continue
        keys.append(key)
        known = await session.scalar(
            select(exists(resolver.named(key)) | exists().where(ProtocolRow.key == key))
        )
        if known:
            continue
        advice = await resolver.did_you_mean(session, name, filtered=False)
        if advice.suggestions:
            raise RuleError(
                "filters.protocols",
                f"no incident goes by {shown(name)}; did you mean "
                f"{', '.join(advice.suggestions)}? Use one of these names",
            )
        notes.append(
            f"No incident on record goes by {shown(name)} yet; the rule watches for the first one."
        )
    return keys, notes


def default_name(filters: AlertFilters) -> str:
    """A rule's name when its owner gives none: what it watches, in a few words."""
    parts = [
        f"{label} {', '.join(values)}"
        for label, values in (
            ("protocols", filters.protocols),
            ("chains", filters.chains),
            ("attack types", [t.value for t in filters.attack_types]),
            ("addresses", filters.addresses),
        )
        if values
    ]
    if filters.min_loss_usd is not None:
        parts.append(f"losses from ${filters.min_loss_usd:,.0f}")
    text = "; ".join(parts) or "every incident"
    return text if len(text) <= MAX_NAME_LENGTH else text[: MAX_NAME_LENGTH - 1] + "…"


async def count_rules(session: AsyncSession, owner: Owner) -> int:
    """The owner's rules that count against a cap (a monitor's end frees nothing: it is paid)."""
    found = await session.scalar(
        select(func.count()).select_from(AlertRule).where(owner.condition())
    )
    return found or 0


async def create_rule(
    session: AsyncSession,
    owner: Owner,
    name: str | None,
    filters: AlertFilters,
    webhook_url: str | None,
    now: dt.datetime,
    *,
    secret_key: SecretStr,
    expires_at: dt.datetime | None = None,
) -> tuple[AlertRule, str | None]:
    """A new rule, and its webhook signing secret in plain text (None without a webhook): the
    only time it is seen unsealed outside the sender. ``filters.protocols`` must be resolved
    (:func:`resolve_protocols`) and ``webhook_url`` checked by the caller."""
    secret = secrets.new_secret() if webhook_url is not None else None
    rule = AlertRule(
        id=RULE_ID_PREFIX + random_ids.token_urlsafe(16),
        account_pk=owner.account_pk,
        payer=owner.payer if owner.account_pk is None else None,
        name=(name or "").strip() or default_name(filters),
        filters=filters.model_dump(mode="json"),
        webhook_url=webhook_url,
        secret=secrets.seal(secret_key, secret) if secret is not None else None,
        enabled=True,
        failures=0,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(rule)
    await session.flush()
    return rule, secret


def _newest_deliveries(rule_pks: list[int]) -> Select[AlertDelivery]:
    rank = (
        func.row_number()
        .over(partition_by=AlertDelivery.rule_pk, order_by=AlertDelivery.pk.desc())
        .label("rank")
    )
    ranked = select(AlertDelivery.pk, rank).where(AlertDelivery.rule_pk.in_(rule_pks)).subquery()
    return (
        select(AlertDelivery)
        .join(ranked, ranked.c.pk == AlertDelivery.pk)
        .where(ranked.c.rank <= DELIVERY_LOG_SIZE)
        .order_by(AlertDelivery.rule_pk, AlertDelivery.pk.desc())
    )


async def list_rules(
    session: AsyncSession, owner: Owner, now: dt.datetime, alert_id: str | None = None
) -> list[Rule]:
    """The owner's rules (or only ``alert_id``), oldest first, each with its newest deliveries."""
    which = owner.condition()
    if alert_id is not None:
        which &= AlertRule.id == alert_id
    rules = list(await session.scalars(select(AlertRule).where(which).order_by(AlertRule.pk)))
    logs: dict[int, list[Delivery]] = {rule.pk: [] for rule in rules}
    if rules:
        for delivery in await session.scalars(_newest_deliveries(list(logs))):
            logs[delivery.rule_pk].append(Delivery.model_validate(delivery, from_attributes=True))
    return [view(rule, now, logs[rule.pk]) for rule in rules]


async def owned(session: AsyncSession, owner: Owner, alert_id: str) -> AlertRule:
    rule = await session.scalar(
        select(AlertRule).where(AlertRule.id == alert_id, owner.condition())
    )
    if rule is None:
        raise NotFoundError(
            f"No alert rule {shown(alert_id)} of yours; list_alerts shows the ids of your rules."
        )
    return rule


async def delete_rule(session: AsyncSession, owner: Owner, alert_id: str) -> int:
    """Delete the owner's rule (its deliveries go with it); how many were still pending."""
    rule = await owned(session, owner, alert_id)
    pending = await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.rule_pk == rule.pk, AlertDelivery.status == "pending")
        .values(status="cancelled")
    )
    await session.execute(delete(AlertRule).where(AlertRule.pk == rule.pk))
    return int(getattr(pending, "rowcount", 0) or 0)


async def queue_test(session: AsyncSession, owner: Owner, alert_id: str, now: dt.datetime) -> str:
    """A signed test delivery for the rule's webhook, due now; its id (the webhook-id)."""
    rule = await owned(session, owner, alert_id)
    if rule.webhook_url is None:
        raise RuleError(
            "alert_id",
            "this rule has no webhook to test: it tells the account's MCP sessions subscribed "
            f"to {RESOURCE_TEMPLATE.format(alert_id=rule.id)}",
        )
    if rule.expires_at is not None and rule.expires_at <= now:
        raise RuleError("alert_id", "this monitor has expired; create a new one")
    delivery_id = new_delivery_id()
    data = {
        "alert_id": rule.id,
        "message": "A test delivery from KAMIYO: this webhook receives the rule's alerts.",
    }
    session.add(
        AlertDelivery(
            id=delivery_id,
            rule_pk=rule.pk,
            outbox_pk=None,
            event=TEST_EVENT,
            incident_id=None,
            body=webhook_body(TEST_EVENT, data, now),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    await session.flush()
    return delivery_id


def active(now: dt.datetime) -> ColumnElement[bool]:
    """Rules that may still match: enabled and not expired (for the worker's query)."""
    return AlertRule.enabled.is_(True) & or_(
        AlertRule.expires_at.is_(None), AlertRule.expires_at > now
    )

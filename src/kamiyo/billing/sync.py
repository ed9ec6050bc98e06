"""Catching up with Stripe: all its subscriptions applied to our rows (``kamiyo billing sync``).

Webhooks stay the source of truth (DESIGN.md). This repairs what missed ones left behind (an
endpoint down for longer than Stripe retries, a wrong signing secret for a while): it lists all
of Stripe's subscriptions (``status=all``, ``PAGE_SIZE`` a page, ``starting_after`` cursors) and
applies each with ``apply_subscription``, the webhooks' own code, in a transaction of its own
that locks the account's row as a webhook's does. A first paid activation gets its welcome mail
after the commit, as from a webhook.

The time of a fetched state (``as_of``). A listed object is Stripe's state at some moment
while its page's request ran, so the page is dated by when that request was *sent*, rounded
down to Stripe's whole seconds and less ``CLOCK_MARGIN`` (our clock may run a little ahead of
Stripe's). That makes ``as_of`` strictly older than any event Stripe creates after the moment
the object shows, so against such an event the fetch loses whatever the order:

- the event was applied first: the fetched object is older than the row's state, and changes
  nothing (``apply_subscription`` ignores stale states);
- the sync came first: the event is newer than the fetched state, and applies on arrival.

Events created before the request were sent are in the object already, so it may overwrite
them: that is how a missed event's effect arrives. (Dating a page by when its answer came
instead would make an event created while the request ran look older than a state that
predates it: it would be dropped as stale, for good.) The margin's cost: a row already holding
an event from those last seconds is left as it is, being as new as the fetch; the next sync
looks again. A ``past_due`` state first seen here starts its grace at ``as_of``.

Idempotent: a second run applies the same states again and changes nothing an account holds;
only ``stripe_state_at`` moves to the later fetch (the state was confirmed then, which makes
late stragglers of older events stale). The report counts a row as changed only when one of
``STATE_FIELDS`` did.
"""

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import false, inspect, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stripe.params import SubscriptionListParams

from kamiyo.access import revocation
from kamiyo.alerts.outbox import work_outbox
from kamiyo.billing.stripe_api import StripeCallError, call_stripe
from kamiyo.billing.subscriptions import Applied, apply_subscription
from kamiyo.config import Settings, StripeSettings
from kamiyo.db.alerts import MAIL_KIND
from kamiyo.db.engine import dialect_name
from kamiyo.db.tables import Account, Subscription

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # Stripe's largest page
CLOCK_MARGIN = dt.timedelta(seconds=5)
# What a row grants and whom it links; ``stripe_state_at`` and ``updated_at`` are bookkeeping.
STATE_FIELDS = (
    "tier",
    "status",
    "stripe_customer_id",
    "stripe_subscription_id",
    "stripe_price_id",
    "current_period_end",
    "cancel_at_period_end",
    "past_due_since",
)
# An IntegrityError means a webhook for the same account committed a row meanwhile; trying
# again reads it (as the webhook path does).
_ATTEMPTS = 3

Sessions = async_sessionmaker[AsyncSession]


@dataclass(slots=True)
class SyncReport:
    """What a sync did, so far (``on_progress`` sees it grow)."""

    seen: int = 0  # subscriptions Stripe listed
    changed: int = 0  # an account's row now says something else
    unchanged: int = 0  # the account's row said so already (or holds a newer state)
    ignored: int = 0  # no account here: another product's customer, or one deleted
    unusable: int = 0  # breaks what Stripe sends (stripe_objects.read): not applied, logged
    first_activations: int = 0  # accounts now paying for the first time (welcome mailed)
    pages: int = 0

    def summary(self) -> str:
        unusable = f", {self.unusable} unusable (see the log)" if self.unusable else ""
        return (
            f"{self.seen} Stripe subscription(s): {self.changed} changed, "
            f"{self.unchanged} unchanged, {self.ignored} ignored (no account here){unusable}, "
            f"{self.first_activations} first activation(s)."
        )


@dataclass(frozen=True, slots=True)
class _Page:
    subscriptions: list[Mapping[str, Any]]
    has_more: bool
    as_of: dt.datetime


async def sync_subscriptions(
    sessions: Sessions,
    settings: Settings,
    *,
    on_progress: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """Apply every subscription Stripe holds; Stripe's failures raise a ``BillingError``.

    What was applied before a failure stays applied (each subscription commits on its own), so
    running it again after one is safe.
    """
    report = SyncReport()
    cursor: str | None = None
    while True:
        page = await _fetch_page(settings.stripe, cursor)
        report.pages += 1
        for obj in page.subscriptions:
            applied, changed = await _apply(sessions, settings, obj, page.as_of)
            if not applied.unusable:  # an unusable one's id may be anything
                log.debug("stripe sync: %s: %s", obj.get("id"), applied.outcome)
            report.seen += 1
            if applied.unusable:  # the reason names the field, never its value
                report.unusable += 1
                log.warning("stripe sync: a listed subscription was %s", applied.outcome)
            elif applied.account_pk is None:
                report.ignored += 1
            elif changed:
                report.changed += 1
            else:
                report.unchanged += 1
            if applied.first_activation and applied.account_pk is not None:
                report.first_activations += 1
            if on_progress is not None:
                on_progress(report)
        if not page.has_more:
            break
        cursor = _id(page.subscriptions[-1]) if page.subscriptions else None
        if cursor is None:  # more to come, but nothing to continue after
            raise StripeCallError("Stripe's subscription list could not be read to its end")
    if report.first_activations:  # their welcomes are queued: send them now, not at next serve
        await work_outbox(sessions, settings, None, dt.datetime.now(dt.UTC), kinds=[MAIL_KIND])
    log.debug("stripe sync: %s", report.summary())
    return report


async def _fetch_page(billing: StripeSettings, cursor: str | None) -> _Page:
    params: SubscriptionListParams = {"status": "all", "limit": PAGE_SIZE}
    if cursor is not None:
        params["starting_after"] = cursor

    def call(client: stripe.StripeClient) -> str:
        page = client.v1.subscriptions.list(params=params)
        # The client factory hands back text: the page travels as Stripe's JSON.
        return json.dumps(page.to_dict(for_json=True))

    sent = dt.datetime.now(dt.UTC)  # taken before the request goes: see the module notes
    text = await call_stripe(billing, "subscription list", call)
    as_of = sent.replace(microsecond=0) - CLOCK_MARGIN
    answer = json.loads(text)
    data = answer.get("data") if isinstance(answer, Mapping) else None
    has_more = answer.get("has_more") if isinstance(answer, Mapping) else None
    if not isinstance(data, list) or not isinstance(has_more, bool):
        log.warning("stripe sync: a subscription page without data or has_more")
        raise StripeCallError("Stripe answered the subscription list with something else")
    return _Page([obj for obj in data if isinstance(obj, Mapping)], has_more, as_of)


async def _apply(
    sessions: Sessions, settings: Settings, obj: Mapping[str, Any], as_of: dt.datetime
) -> tuple[Applied, bool]:
    """Apply one subscription in its own transaction; whether the account's row changed."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with sessions() as session, session.begin():
                await _lock_database(session)
                # Nothing is pending before the call, and no flush inside it: the row's
                # attribute history then says what the call changed.
                with session.no_autoflush:
                    applied = await apply_subscription(session, settings.stripe, obj, as_of)
                    changed = applied.account_pk is not None and _changed(
                        session, applied.account_pk
                    )
            if applied.credentials_changed and applied.account_pk is not None:
                async with sessions() as session:  # every instance sees it on the next call
                    await revocation.announce(session, settings, [applied.account_pk])
            return applied, changed
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
            log.info("stripe sync: %s raced a webhook; trying again", obj.get("id"))
    raise AssertionError("unreachable")  # the loop returns or raises


async def _lock_database(session: AsyncSession) -> None:
    """SQLite: take the database's write lock before reading, as a webhook's first write does.

    A write statement takes it even when it matches no row, so a webhook and the sync queue
    (busy_timeout) instead of both reading a row and one failing at its write. PostgreSQL
    needs nothing here: ``apply_subscription`` locks the account's row.
    """
    if dialect_name(session) == "sqlite":
        await session.execute(
            update(Account)
            .where(false())
            .values(pk=Account.pk)
            .execution_options(synchronize_session=False)
        )


def _changed(session: AsyncSession, account_pk: int) -> bool:
    for row in (*session.new, *session.dirty):
        if isinstance(row, Subscription) and row.account_pk == account_pk:
            state = inspect(row)
            return state.pending or any(
                state.attrs[name].history.has_changes() for name in STATE_FIELDS
            )
    return False


def _id(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("id")
    return value if isinstance(value, str) and value else None

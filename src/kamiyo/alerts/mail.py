"""Mail sent through the outbox: written in the transaction of the change that calls for it
(a first payment, a rule disabled), so a crash after that commit still sends it.

A mail the server refuses raises, and the outbox row is tried again when its lease ends.
"""

import datetime as dt
import logging
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.billing.mailer import send_mail
from kamiyo.billing.onboarding import Onboarding, send_welcome
from kamiyo.config import Settings
from kamiyo.db.alerts import MAIL_KIND, OutboxEntry
from kamiyo.db.tables import Account

log = logging.getLogger(__name__)

WELCOME = "welcome"
ALERT_DISABLED = "alert_disabled"


async def queue(session: AsyncSession, template: str, now: dt.datetime, **fields: Any) -> None:
    """An outbox row for one mail, in the caller's transaction."""
    payload = {"template": template, **fields}
    await session.execute(
        insert(OutboxEntry).values(kind=MAIL_KIND, payload=payload, created_at=now, attempts=0)
    )


async def send(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    session: AsyncSession,
    payload: dict[str, Any],
) -> None:
    template = payload.get("template")
    if template == WELCOME:
        # Failures are logged there; the welcome's one-time link is made in its own session.
        await send_welcome(sessions, Onboarding.from_settings(settings), int(payload["account_pk"]))
    elif template == ALERT_DISABLED:
        await _alert_disabled(settings, session, payload)
    else:
        log.error("an outbox mail has an unknown template %r; not sent", template)


async def _alert_disabled(
    settings: Settings, session: AsyncSession, payload: dict[str, Any]
) -> None:
    account = await session.get(Account, int(payload["account_pk"]))
    if account is None:
        return  # the account was deleted since: nobody to tell
    text = (
        f"Your KAMIYO alert {payload['name']!r} ({payload['alert_id']}) was switched off: "
        f"{payload['reason']}.\n\n"
        "Its webhook failed every delivery attempt several times in a row, so KAMIYO stopped "
        "sending to it. Fix the receiver, then create the alert again (create_alert, or "
        "POST /api/v1/alerts); test_alert sends a signed test delivery.\n"
    )
    await send_mail(settings.smtp, account.email, "A KAMIYO alert was switched off", text)

"""Reports: a risk assessment or a wallet screen run for the signed-in account, kept as it was
answered, and its share link.

A report is run through the same pipeline as the MCP tools (``service.pipeline.execute``), as
the account: a 5-minute access token is minted for the call and dropped after it (never stored
or logged), so the gate checks the tier and the limits and meters the call like any other.

A share link carries 32 random bytes; only their SHA-256 is kept (``shared_reports``). Sharing
is off until the owner asks (a screened wallet is private data); once revoked, the link answers
410 until the owner shares the report again (which makes a new link).
"""

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.gate import Refusal
from kamiyo.access.one_time_links import TOKEN_PATTERN, hash_token
from kamiyo.access.tokens import issue_token
from kamiyo.db.bounds import INTEGER_MAX
from kamiyo.db.reports import SharedReport
from kamiyo.db.tables import Account
from kamiyo.service.answers import Answer, Failure
from kamiyo.service.arguments import parse_query
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.service.pipeline import Caller, execute
from kamiyo.service.state import ServerState

# The operations a report can be made of, and the template that renders each one's answer.
REPORT_KINDS = {
    ToolName.ASSESS_PROTOCOL_RISK: "risk",
    ToolName.CHECK_WALLET_INTERACTIONS: "wallet",
}
# Long enough for one call (a wallet screen reads histories for some seconds), no longer.
CALL_TOKEN_TTL_S = 300


@dataclass(frozen=True, slots=True)
class SharedView:
    """What a share link leads to: the report, or None once its sharing was revoked."""

    report: SharedReport | None


async def run_report(
    state: ServerState,
    account: Account,
    operation: ToolName,
    given: dict[str, Any],
    peer: str,
) -> SharedReport | Refusal | Failure:
    """Run ``operation`` with ``given`` as ``account``; the stored report, or why not."""
    chosen = CATALOGUE[operation]
    sessions = state.require_runtime().sessions
    async with sessions() as session:
        token = await issue_token(session, state.settings.auth, account, ttl_s=CALL_TOKEN_TTL_S)
    query = parse_query(operation.value, chosen.query, given)
    outcome = await execute(state, chosen, query, Caller(credential=token, peer=peer))
    if not isinstance(outcome, Answer):
        return outcome
    report = SharedReport(
        account_pk=account.pk,
        operation=operation.value,
        arguments={name: value for name, value in given.items() if value is not None},
        answer=outcome.structured,
        created_at=_now(),
    )
    async with sessions() as session:
        session.add(report)
        await session.commit()
        await session.refresh(report)
    return report


async def list_reports(session: AsyncSession, account_pk: int) -> list[SharedReport]:
    found = await session.scalars(
        select(SharedReport)
        .where(SharedReport.account_pk == account_pk)
        .order_by(SharedReport.created_at.desc(), SharedReport.pk.desc())
    )
    return list(found)


async def owned_report(
    session: AsyncSession, account_pk: int, report_pk: int
) -> SharedReport | None:
    """The report if ``account_pk`` owns it; another account's report looks like none (as
    does a number no row can have: PostgreSQL would refuse to look it up)."""
    if not 1 <= report_pk <= INTEGER_MAX:
        return None
    report = await session.get(SharedReport, report_pk)
    return report if report is not None and report.account_pk == account_pk else None


def is_shared(report: SharedReport) -> bool:
    return report.share_hash is not None and report.share_revoked_at is None


def share(report: SharedReport) -> str:
    """A new share link token for ``report`` (the caller commits); shown once, kept hashed."""
    token = secrets.token_urlsafe(32)
    report.share_hash = hash_token(token)
    report.shared_at = _now()
    report.share_revoked_at = None
    return token


def revoke_share(report: SharedReport) -> bool:
    """Stop the link working (410 from now on); whether it was working. Caller commits."""
    if not is_shared(report):
        return False
    report.share_revoked_at = _now()
    return True


async def find_shared(session: AsyncSession, token: str) -> SharedView | None:
    """What the link ``token`` leads to; None for a token that never was a link."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    report = await session.scalar(
        select(SharedReport).where(SharedReport.share_hash == hash_token(token))
    )
    if report is None:
        return None
    return SharedView(report if is_shared(report) else None)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

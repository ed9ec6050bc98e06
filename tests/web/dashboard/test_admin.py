"""The operators' page and its figures: correct for known rows on SQLite and PostgreSQL, shown
only to admins (everyone else gets 404), the role granted by ``kamiyo accounts set-role``."""

import asyncio
import datetime as dt
import re

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from kamiyo.access import accounts
from kamiyo.access.business_metrics import WINDOW_DAYS, business_metrics
from kamiyo.cli import app
from kamiyo.config import get_settings
from kamiyo.db.tables import Role
from kamiyo.runtime import open_runtime
from kamiyo.tiers import Tier
from tests.web.dashboard.business_rows import BASE, SOLANA, seed
from tests.web.dashboard.conftest import Site

pytestmark = pytest.mark.anyio
GRACE = dt.timedelta(days=7)


async def test_the_figures_from_known_rows(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = dt.datetime.now(dt.UTC)
    async with migrated_sessions() as session:
        await seed(session, now)
        metrics = await business_metrics(session, GRACE, now)
    assert metrics.accounts_by_tier == {
        Tier.FREE: 3, Tier.PERSONAL: 1, Tier.TEAM: 1, Tier.ENTERPRISE: 0,
    }  # fmt: skip
    mrr = {row.tier: (row.subscriptions, row.mrr_usd) for row in metrics.revenue_by_tier}
    # Only c pays: d's tier was set by hand, e is past due beyond the grace.
    assert mrr == {Tier.PERSONAL: (1, 19), Tier.TEAM: (0, 0), Tier.ENTERPRISE: (0, 0)}
    assert metrics.mrr_usd == 19
    assert [(n.network, n.payments, n.amount) for n in metrics.x402_by_network] == [
        (BASE, 2, 150_000),
        (SOLANA, 1, 10_000),
    ]  # from the receipts: the settled payment no usage record names is counted apart
    assert metrics.unrecorded_settlements == 1
    assert [(r.receipt.transaction, r.account_pk is None) for r in metrics.recent_receipts] == [
        ("0xtx1", False),
        ("0xtx2", True),
        ("0xtx0", True),
    ]
    payer = metrics.recent_receipts[0].account_pk
    assert payer is not None
    assert metrics.emails[payer].endswith("@metrics.example")
    today = now.date()
    assert len(metrics.daily_active) == WINDOW_DAYS
    assert metrics.daily_active[-1] == (today, 2)
    assert metrics.daily_active[-2] == (today - dt.timedelta(days=1), 1)
    assert sum(count for _, count in metrics.daily_active) == 3
    assert [(t.tool, t.calls, t.errors) for t in metrics.top_tools] == [
        ("get_exploit", 3, 0),
        ("search_exploits", 3, 1),
        ("assess_protocol_risk", 1, 0),
    ]
    assert (metrics.calls, metrics.errors, metrics.error_rate) == (7, 1, 1 / 7)
    assert [(s.name, s.accounts, s.of_previous, s.of_signups) for s in metrics.funnel] == [
        ("signed up", 5, None, None),
        ("created a key", 4, 0.8, 0.8),
        ("made a call", 2, 0.5, 0.4),
        ("paid", 1, 0.5, 0.2),
    ]


async def test_an_empty_database_has_zero_figures(
    migrated_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with migrated_sessions() as session:
        metrics = await business_metrics(session, GRACE)
    assert metrics.mrr_usd == 0
    assert metrics.error_rate is None
    assert [step.accounts for step in metrics.funnel] == [0, 0, 0, 0]
    assert metrics.funnel[1].of_previous is None


async def test_the_page_is_for_admins_only_and_shows_the_figures(site: Site) -> None:
    async with site.browser() as anonymous:
        assert (await anonymous.get("/admin")).status_code == 404
    await site.log_in("operator@example.com")
    refused = await site.http.get("/admin")
    assert refused.status_code == 404
    assert 'href="/admin"' not in (await site.http.get("/dashboard")).text
    async with site.sessions() as session:
        await seed(session, dt.datetime.now(dt.UTC))
        operator = await accounts.require_account(session, "operator@example.com")
        assert accounts.set_role(operator, Role.ADMIN)
        await session.commit()
    page = await site.http.get("/admin")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert 'href="/admin"' in text
    assert '<strong id="mrr">$19</strong>' in text
    assert '<td id="accounts-free">4</td>' in text  # the operator's own account is free
    assert re.findall(r'class="x402-amount">([^<]+)<', text) == ["$0.15", "$0.01"]
    assert '<strong id="error-rate">14.3 %</strong>' in text
    receipts = re.findall(r'<tr class="receipt">(.*?)</tr>', text)
    assert [re.findall(r'class="transaction">([^<]+)<', row) for row in receipts] == [
        ["0xtx1"],
        ["0xtx2"],
        ["0xtx0"],
    ]
    assert "<td>no account</td>" in receipts[1]
    assert re.search(r"<td>\w+@metrics\.example</td>", receipts[0])  # the payer, by email
    assert '<td class="amount">$0.10</td>' in receipts[0]
    assert "Solana" in receipts[1]
    assert re.search(r'<p id="unrecorded" role="status">1 settled payment in the journal', text)
    assert re.findall(r'class="funnel-count">(\d+)<', text) == ["6", "4", "2", "1"]
    assert text.count("<svg") == 2
    assert text.count("<title>") >= WINDOW_DAYS + 4  # a bar per day, a bar per step


def test_set_role_grants_and_takes_back_the_admin_role() -> None:
    runner = CliRunner()

    def kamiyo(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stderr

    assert kamiyo("accounts", "create", "ops@example.com")[0] == 0
    assert kamiyo("accounts", "set-role", "OPS@example.com", "admin") == (
        0, "OPS@example.com is an admin.\n",
    )  # fmt: skip
    assert "already" in kamiyo("accounts", "set-role", "ops@example.com", "admin")[1]

    async def role() -> Role:
        async with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
            account = await accounts.require_account(session, "ops@example.com")
            return accounts.account_role(account)

    assert asyncio.run(role()) is Role.ADMIN
    assert kamiyo("accounts", "set-role", "ops@example.com", "user")[0] == 0
    assert asyncio.run(role()) is Role.USER
    code, err = kamiyo("accounts", "set-role", "ops@example.com", "root")
    assert code == 2
    assert "root" in err
    code, err = kamiyo("accounts", "set-role", "nobody@example.com", "admin")
    assert (code, err.strip()) == (2, "error: no account for nobody@example.com")

"""The usage page after real calls with the account's key over REST and MCP: the chart (SVG
that parses, a bar per day, stacked by status), the table by tool, the limits, and the CSV."""

import csv
import datetime as dt
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx2
import pytest

from kamiyo.access import accounts, keys
from kamiyo.access.meter import Meter, Receipt, UsageEvent
from kamiyo.payments import journal
from kamiyo.tiers import TIERS, Tier
from tests.billing.smtp import running_mailbox
from tests.billing.stripe_fake import running_fake_stripe
from tests.web.dashboard.conftest import Site, open_site

pytestmark = pytest.mark.anyio

SVG = "{http://www.w3.org/2000/svg}"
CHART = re.compile(r'<svg xmlns="http://www.w3.org/2000/svg"[^>]*id="calls-per-day".*?</svg>', re.S)
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}
TX = "0x" + "ab" * 32
BASE = "eip155:8453"
PAYER = "0x" + "12" * 20


@pytest.fixture
async def site(sqlite_url: str) -> AsyncIterator[Site]:
    """Stateless MCP with JSON answers, so that one POST is one tool call."""
    with running_fake_stripe() as stripe, running_mailbox() as mailbox:
        async for opened in open_site(
            sqlite_url, stripe, mailbox, stateless=True, json_response=True
        ):
            yield opened


async def calls_with_a_key(site: Site, email: str) -> None:
    """Over REST: two answered searches, one with a bad argument, one tool the free tier lacks;
    over MCP: one answered search."""
    async with site.sessions() as session:
        account = await accounts.find_account(session, email)
        assert account is not None
        key = (await keys.create_key(session, account, "usage")).key
        await session.commit()
    bearer = {"Authorization": f"Bearer {key}"}
    api = site.browser()
    assert (await api.get("/api/v1/exploits", headers=bearer)).status_code == 200
    assert (await api.get("/api/v1/exploits?limit=2", headers=bearer)).status_code == 200
    assert (await api.get("/api/v1/exploits?limit=x", headers=bearer)).status_code == 400
    assert (await api.get(f"/api/v1/transactions/{TX}/screen", headers=bearer)).status_code == 403
    # A loopback Host: the MCP endpoint's DNS-rebinding guard lets only those in.
    async with httpx2.AsyncClient(
        transport=site.transport, base_url="http://127.0.0.1:8000"
    ) as mcp:
        answer = await mcp.post(
            "/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "search_exploits", "arguments": {"limit": 1}},
            },
            headers=MCP_HEADERS | bearer,
        )
    assert answer.status_code == 200, answer.text
    assert not answer.json()["result"].get("isError"), answer.text


def tool_row(page: str, tool: str) -> list[int]:
    found = re.search(rf"<tr><th scope=\"row\"><code>{tool}</code></th>(.*?)</tr>", page)
    assert found is not None, tool
    return [int(n) for n in re.findall(r"<td>(\d+)</td>", found.group(1))]


async def test_the_usage_page_counts_real_calls(site: Site) -> None:
    await site.log_in("usage@example.com")
    await calls_with_a_key(site, "usage@example.com")
    page = await site.http.get("/dashboard/usage")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"

    # By tool: ok, refused, error, total; get_usage is this page's own call.
    assert tool_row(page.text, "search_exploits") == [3, 0, 1, 4]
    assert tool_row(page.text, "screen_transaction") == [0, 1, 0, 1]
    assert tool_row(page.text, "get_usage") == [1, 0, 0, 1]
    # Against the limits: the page's get_usage counts the calls before it and itself, but not
    # the locked tool's (a tier refusal uses no request).
    minute = re.search(r'<tr id="limit-1">.*?<td>(\d+)</td><td>(\d+)</td>', page.text, re.S)
    assert minute is not None
    assert (int(minute[1]), int(minute[2])) == (5, TIERS[Tier.FREE].requests_per_minute)

    [drawn] = CHART.findall(page.text)
    svg = ET.fromstring(drawn)
    assert svg.find(f"{SVG}title") is not None
    assert svg.find(f"{SVG}desc") is not None
    days = svg.findall(f"{SVG}g[@class='day']")
    assert len(days) == 30
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert days[-1].get("data-day") == today
    bars = {str(bar.get("data-status")): bar for bar in days[-1].findall(f"{SVG}rect")}
    assert sorted(bars) == ["error", "ok", "refused"]
    titles = {name: bar.findtext(f"{SVG}title") for name, bar in bars.items()}
    assert titles == {
        "ok": f"{today}: 4 ok",
        "refused": f"{today}: 1 refused",
        "error": f"{today}: 1 error",
    }
    assert not any(day.findall(f"{SVG}rect") for day in days[:-1])  # no calls before today
    # Heights in proportion to the calls.
    heights = {name: float(str(bar.get("height"))) for name, bar in bars.items()}
    assert heights["ok"] == pytest.approx(4 * heights["error"], rel=0.02)


async def test_the_csv_has_a_row_per_day_tool_and_status(site: Site) -> None:
    await site.log_in("csv@example.com")
    await calls_with_a_key(site, "csv@example.com")
    answer = await site.http.get("/dashboard/usage.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="kamiyo-usage-\d{8}-\d{8}\.csv"',
        answer.headers["content-disposition"],
    )
    today = dt.datetime.now(dt.UTC).date().isoformat()
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == (
        [
            "record",
            "day",
            "tool",
            "status",
            "calls",
            "at_utc",
            "network",
            "amount_usd",
            "payer",
            "transaction",
        ]
    )
    blank = [""] * 5  # no receipt: nothing was paid per call
    assert sorted(rows[1:]) == [
        ["calls", today, "screen_transaction", "forbidden", "1", *blank],
        ["calls", today, "search_exploits", "invalid", "1", *blank],
        ["calls", today, "search_exploits", "ok", "3", *blank],
    ]


async def test_usage_pages_need_a_session(site: Site) -> None:
    for path in ("/dashboard/usage", "/dashboard/usage.csv"):
        answer = await site.http.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login"


async def paid_per_call(site: Site, email: str, transaction: str) -> None:
    """The account's key paid for a call with x402: the journal settled the payment and the
    meter wrote the call with its receipt (as the gate's ``complete`` does)."""
    async with site.sessions() as session:
        account = await accounts.find_account(session, email)
        assert account is not None
    entry = journal.Entry(transaction, transaction, None, "assess_protocol_risk", BASE, 50_000)
    held = await journal.hold(site.sessions, entry)
    assert isinstance(held, journal.Held)
    await journal.settled(site.sessions, held, PAYER, transaction, {}, None)
    meter = Meter(flush_interval_s=3600)
    async with meter.running(site.sessions):
        meter.record(
            UsageEvent(
                at=dt.datetime.now(dt.UTC),
                account_pk=account.pk,
                key_pk=None,
                tool="assess_protocol_risk",
                tier="x402",
                status="ok",
                duration_us=1000,
                result_count=1,
                cost_units=1,
                receipt=Receipt(held.pk, BASE, PAYER, 50_000, transaction),
            )
        )


async def test_the_usage_page_and_csv_list_the_accounts_receipts(site: Site) -> None:
    await site.log_in("payer@example.com")
    other = site.browser()
    await site.log_in("other@example.com", other)
    await paid_per_call(site, "payer@example.com", TX)
    await paid_per_call(site, "other@example.com", "0x" + "ef" * 32)
    page = await site.http.get("/dashboard/usage")
    assert page.status_code == 200, page.text
    [row] = re.findall(r'<tr class="receipt">(.*?)</tr>', page.text, re.S)
    assert "<code>assess_protocol_risk</code>" in row
    assert 'Base <code class="network">eip155:8453</code>' in row
    assert '<td class="amount">$0.05</td>' in row
    assert f'<code class="payer">{PAYER}</code>' in row
    assert f'<code class="transaction">{TX}</code>' in row
    answer = await site.http.get("/dashboard/usage.csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    [receipt] = [row for row in rows if row[0] == "receipt"]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert receipt[:5] == ["receipt", today, "assess_protocol_risk", "ok", ""]
    assert receipt[5].startswith(today + "T")
    assert receipt[6:] == [BASE, "$0.05", PAYER, TX]
    # The other account sees its own receipt only.
    theirs = await other.get("/dashboard/usage")
    assert TX not in theirs.text
    assert "ef" * 32 in theirs.text


async def test_an_account_that_paid_nothing_per_call_is_told_how_it_could(site: Site) -> None:
    await site.log_in("plain@example.com")
    page = await site.http.get("/dashboard/usage")
    assert 'id="receipts-table"' not in page.text
    assert "No call was paid per call in the last 30 days." in page.text

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
    assert rows[0] == ["day", "tool", "status", "calls"]
    assert sorted(rows[1:]) == [
        [today, "screen_transaction", "forbidden", "1"],
        [today, "search_exploits", "invalid", "1"],
        [today, "search_exploits", "ok", "3"],
    ]


async def test_usage_pages_need_a_session(site: Site) -> None:
    for path in ("/dashboard/usage", "/dashboard/usage.csv"):
        answer = await site.http.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login"

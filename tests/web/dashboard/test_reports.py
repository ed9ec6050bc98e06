"""Reports: made through the pipeline as the signed-in account (its tier and limits apply),
private to their owner, shared by a link only when the owner asks, revocable (410)."""

import logging
import re

import anyio
import pytest
from sqlalchemy import select

from kamiyo.access import accounts
from kamiyo.db.reports import SharedReport
from kamiyo.db.usage import UsageRecord
from kamiyo.tiers import Tier
from kamiyo.web.access_log import logged_path
from tests.billing.conftest import PUBLIC_URL
from tests.web.dashboard.conftest import Site

pytestmark = pytest.mark.anyio

RONIN_ATTACKER = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"
SHARE_LINK = re.compile(
    r'<pre id="share-link"[^>]*>' + re.escape(PUBLIC_URL) + r"(/r/[A-Za-z0-9_-]{43})</pre>"
)


async def on_tier(site: Site, email: str, tier: Tier) -> str:
    """Log ``email`` in on ``tier``; the session's CSRF token."""
    csrf = await site.log_in(email)
    async with site.sessions() as session:
        account = await accounts.require_account(session, email)
        await accounts.set_tier(session, account, tier)
        await session.commit()
    return csrf


async def make_report(site: Site, csrf: str, **fields: str) -> str:
    answer = await site.http.post("/dashboard/reports", data={"csrf_token": csrf, **fields})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


async def test_a_risk_report_is_private_until_shared_and_revocable(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    csrf = await on_tier(site, "owner@example.com", Tier.PERSONAL)
    page = await make_report(site, csrf, operation="assess_protocol_risk", protocol_name="Ronin")
    assert re.fullmatch(r"/dashboard/reports/\d+", page)
    shown = await site.http.get(page)
    assert shown.status_code == 200
    for expected in ("Protocol risk: Ronin", "/ 100", "Factors", "recency", "Private"):
        assert expected in shown.text, expected
    listed = await site.http.get("/dashboard/reports")
    assert page in listed.text
    assert "private" in listed.text

    # Another account's session sees no such report, and cannot share it.
    other = site.browser()
    other_csrf = await site.log_in("other@example.com", other)
    assert (await other.get(page)).status_code == 404
    shared_by_other = await other.post(f"{page}/share", data={"csrf_token": other_csrf})
    assert shared_by_other.status_code == 404
    async with site.sessions() as session:
        [row] = await session.scalars(select(SharedReport))
    assert row.share_hash is None
    assert (row.operation, row.arguments) == ("assess_protocol_risk", {"protocol_name": "Ronin"})
    assert row.answer["protocol"].startswith("Ronin")
    assert row.answer["score"] is not None

    # The call went through the gate as the account: metered under its tier.
    shared = await site.http.post(f"{page}/share", data={"csrf_token": csrf})
    assert shared.status_code == 200
    [link] = SHARE_LINK.findall(shared.text)
    token = link.removeprefix("/r/")
    async with site.sessions() as session:
        [row] = await session.scalars(select(SharedReport))
    assert row.share_hash is not None
    assert token not in row.share_hash
    assert token not in (await site.http.get(page)).text  # shown once
    assert "shared by link since" in (await site.http.get("/dashboard/reports")).text

    async with site.browser() as anonymous:
        public = await anonymous.get(link)
        assert public.status_code == 200
        assert "Protocol risk: Ronin" in public.text
        assert "as of" in public.text
        assert row.created_at.strftime("%Y-%m-%d") in public.text
        assert public.headers["cache-control"] == "no-store"
        assert public.headers["referrer-policy"] == "no-referrer"
        assert public.headers["x-robots-tag"] == "noindex"
        assert '<meta name="robots" content="noindex' in public.text
        assert "csrf" not in public.text
        assert "owner@example.com" not in public.text

        unshared = await site.http.post(f"{page}/unshare", data={"csrf_token": csrf})
        assert unshared.status_code == 303
        assert (await anonymous.get(link)).status_code == 410
        assert (await anonymous.get("/r/" + "A" * 43)).status_code == 404
        assert (await anonymous.get("/r/short")).status_code == 404
    assert logged_path(link) == "/r/[token]"
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert ours
    assert not [line for line in ours if token in line]


async def test_a_report_never_shared_has_no_public_page(site: Site) -> None:
    csrf = await on_tier(site, "private@example.com", Tier.PERSONAL)
    await make_report(site, csrf, operation="assess_protocol_risk", protocol_name="Euler")
    async with site.sessions() as session:
        [row] = await session.scalars(select(SharedReport))
    assert row.share_hash is None
    for missing in (row.pk + 1, 2**31, 10**20):  # none, and beyond what a column holds
        assert (await site.http.get(f"/dashboard/reports/{missing}")).status_code == 404
    async with site.browser() as anonymous:
        assert (await anonymous.get(f"/dashboard/reports/{row.pk}")).status_code == 303  # log in
        assert (await anonymous.get("/r/" + "x" * 43)).status_code == 404


async def test_a_wallet_screen_shows_verdict_matches_and_coverage(site: Site) -> None:
    csrf = await on_tier(site, "team@example.com", Tier.TEAM)
    page = await make_report(
        site, csrf, operation="check_wallet_interactions", wallet_address=RONIN_ATTACKER,
        chain="",
    )  # fmt: skip
    text = " ".join((await site.http.get(page)).text.split())
    for expected in ("Wallet screen: " + RONIN_ATTACKER, "<strong>block</strong>",
                     "OFAC", "Ronin Network", "History read: no", "Coverage"):  # fmt: skip
        assert expected in text, expected
    async with site.sessions() as session:
        [row] = await session.scalars(select(SharedReport))
        assert row.arguments == {"wallet_address": RONIN_ATTACKER}  # an empty chain: not given


async def test_refusals_and_bad_input_are_shown_and_store_nothing(site: Site) -> None:
    csrf = await site.log_in("free@example.com")  # the free tier has neither tool
    refused = await site.http.post(
        "/dashboard/reports",
        data={"csrf_token": csrf, "operation": "assess_protocol_risk", "protocol_name": "Aave"},
    )
    assert refused.status_code == 403
    assert "Refused:" in refused.text
    assert "personal" in refused.text
    csrf = await on_tier(site, "free@example.com", Tier.PERSONAL)
    wallet = await site.http.post(
        "/dashboard/reports",
        data={"csrf_token": csrf, "operation": "check_wallet_interactions",
              "wallet_address": RONIN_ATTACKER},
    )  # fmt: skip
    assert wallet.status_code == 403, wallet.text
    assert "team" in wallet.text, re.findall(r'class="error"[^<]*', wallet.text)
    bad = await site.http.post(
        "/dashboard/reports",
        data={"csrf_token": csrf, "operation": "assess_protocol_risk", "protocol_name": "  "},
    )
    assert bad.status_code == 400
    assert "No report was made: Invalid arguments" in bad.text
    unknown = await site.http.post(
        "/dashboard/reports", data={"csrf_token": csrf, "operation": "get_exploit"}
    )
    assert unknown.status_code == 400
    assert "Choose a protocol risk report" in unknown.text
    async with site.sessions() as session:
        assert list(await session.scalars(select(SharedReport))) == []
    # The gate metered every call, refusals included, under the account (written each second).
    records: list[tuple[str, str, str]] = []
    for _ in range(50):
        async with site.sessions() as session:
            found = await session.execute(
                select(UsageRecord.tool, UsageRecord.tier, UsageRecord.status)
                .where(UsageRecord.account_pk.is_not(None))
                .order_by(UsageRecord.at, UsageRecord.pk)
            )
            records = [(tool, tier, status) for tool, tier, status in found]
        if len(records) >= 3:
            break
        await anyio.sleep(0.1)
    assert records == [
        ("assess_protocol_risk", "free", "forbidden"),
        ("check_wallet_interactions", "personal", "forbidden"),
        ("assess_protocol_risk", "personal", "invalid"),
    ]

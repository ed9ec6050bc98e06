"""The alerts page: a team account makes a rule (its secret shown once), sends a test to a real
receiver on loopback (signed with that secret, logged on the page), deletes it; the operation's
errors and the tier's refusals are shown on the page; every form needs the CSRF token."""

import html
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
import standardwebhooks
from sqlalchemy import func, select

from kamiyo.access import accounts
from kamiyo.db.alerts import AlertRule
from kamiyo.tiers import TIERS, Tier
from tests.alerts.receiver import Receiver
from tests.billing.smtp import running_mailbox
from tests.billing.stripe_fake import running_fake_stripe
from tests.web.dashboard.conftest import Site, open_site

pytestmark = pytest.mark.anyio

SECRET = re.compile(r'<pre id="alert-secret"[^>]*>(whsec_[A-Za-z0-9+/=]+)</pre>')
RULE_ID = re.compile(r'<section id="rule-(alr_[A-Za-z0-9_-]+)"')
DELIVERED_WITHIN_S = 10


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
async def site(sqlite_url: str) -> AsyncIterator[Site]:
    """Webhooks may reach the receiver on loopback (KAMIYO_WEBHOOKS_ALLOW_LOOPBACK)."""
    changes: dict[str, dict[str, Any]] = {
        "webhooks": {"allow_loopback": True},
        "alerts": {"poll_s": 0.1},
    }
    with running_fake_stripe() as stripe, running_mailbox() as mailbox:
        async for opened in open_site(sqlite_url, stripe, mailbox, changes):
            yield opened


async def sign_in(site: Site, email: str, tier: Tier) -> str:
    async with site.sessions() as session:
        await accounts.create_account(session, email, tier)
        await session.commit()
    return await site.log_in(email)


def form(csrf: str, **fields: str) -> dict[str, str]:
    empty = dict.fromkeys(
        ("name", "chains", "protocols", "min_loss_usd", "attack_types", "addresses"), ""
    )
    return {**empty, "webhook_url": "", **fields, "csrf_token": csrf}


async def rule_count(site: Site) -> int:
    async with site.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AlertRule)) or 0)


async def test_a_rule_is_made_tested_and_deleted(site: Site, receiver: Receiver) -> None:
    csrf = await sign_in(site, "team@example.com", Tier.TEAM)
    page = await site.http.get("/dashboard/alerts")
    assert page.status_code == 200, page.text
    assert f"keeps up to {TIERS[Tier.TEAM].alert_rules} rules; 0 in use" in page.text

    hook = receiver.url(path="/hook/receiver-token")
    made = await site.http.post(
        "/dashboard/alerts",
        data=form(
            csrf,
            name="Big ones",
            chains="ethereum, base",
            min_loss_usd="1,000,000",
            attack_types="reentrancy flash_loan",
            webhook_url=hook,
        ),
    )
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    [secret] = SECRET.findall(made.text)
    [alert_id] = re.findall(r"kamiyo://alerts/(alr_[A-Za-z0-9_-]+)", made.text)[:1]
    assert "Each matching incident is POSTed to <code>127.0.0.1</code>" in made.text
    assert "receiver-token" not in made.text

    listed = await site.http.get("/dashboard/alerts")
    assert secret not in listed.text  # shown once
    assert "whsec_" not in listed.text
    assert RULE_ID.findall(listed.text) == [alert_id]
    assert f"kamiyo://alerts/{alert_id}" in listed.text
    assert "chains: ethereum, base" in listed.text
    assert "losses of at least 1,000,000 USD" in listed.text
    assert "attack types: reentrancy, flash_loan" in listed.text
    assert "POSTs to <code>127.0.0.1</code>" in listed.text
    assert "receiver-token" not in listed.text  # the host only, never the hook's path

    tested = await site.http.post(
        f"/dashboard/alerts/{alert_id}/test",
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert tested.status_code == 200
    assert tested.text.startswith(f'<p id="notice-{alert_id}" class="notice" role="status">')
    assert "A signed test delivery (msg_" in tested.text
    with anyio.fail_after(DELIVERED_WITHIN_S):
        while True:
            listed = await site.http.get("/dashboard/alerts")
            if "<td>delivered</td>" in listed.text:
                break
            await anyio.sleep(0.1)
    [post] = receiver.posts
    assert post.path == "/hook/receiver-token"
    payload = standardwebhooks.Webhook(secret).verify(post.body, post.headers)
    assert payload["type"] == "alert.test"
    assert "<td>alert.test</td>" in listed.text
    assert "HTTP 200" in listed.text

    plain = await site.http.post(f"/dashboard/alerts/{alert_id}/test", data={"csrf_token": csrf})
    assert plain.status_code == 200  # without htmx: the page, with the notice
    assert '<p class="notice" role="status">A signed test delivery' in plain.text
    assert RULE_ID.findall(plain.text) == [alert_id]

    deleted = await site.http.post(
        f"/dashboard/alerts/{alert_id}/delete",
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert deleted.status_code == 200
    assert deleted.text.startswith(f'<section id="rule-{alert_id}" class="rule deleted">')
    # The second test may still be pending: it is cancelled, and the page says so.
    assert f"Deleted the alert rule {alert_id}" in deleted.text
    assert await rule_count(site) == 0
    again = await site.http.post(
        f"/dashboard/alerts/{alert_id}/delete",
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert again.status_code == 200  # htmx swaps only a 200: the error goes under the rule
    assert again.headers["hx-retarget"] == f"#notice-{alert_id}"
    assert 'class="error" role="alert"' in again.text
    assert "No alert rule" in again.text


async def test_the_operations_errors_are_shown_on_the_page(site: Site) -> None:
    csrf = await sign_in(site, "errors@example.com", Tier.TEAM)
    bad = await site.http.post(
        "/dashboard/alerts", data=form(csrf, chains="ethereum notachain", name="kept")
    )
    assert bad.status_code == 400
    assert "No alert rule was made. Invalid arguments for create_alert" in bad.text
    assert "notachain" in bad.text
    assert 'value="ethereum notachain"' in bad.text  # the form keeps what was typed
    assert 'value="kept"' in bad.text
    loss = await site.http.post("/dashboard/alerts", data=form(csrf, min_loss_usd="lots"))
    assert loss.status_code == 400
    assert "min_loss_usd" in loss.text

    cap = TIERS[Tier.TEAM].alert_rules
    for n in range(cap):
        made = await site.http.post("/dashboard/alerts", data=form(csrf, name=f"rule {n}"))
        assert made.status_code == 200, made.text
        assert 'id="alert-secret"' not in made.text  # no webhook, no secret
    over = await site.http.post("/dashboard/alerts", data=form(csrf, name="one too many"))
    assert over.status_code == 400
    assert f"the team tier keeps {cap} alert rules and this account has {cap}" in over.text
    assert "upgrade to enterprise" in over.text
    assert await rule_count(site) == cap

    missing = await site.http.post("/dashboard/alerts/alr_nothere/test", data={"csrf_token": csrf})
    assert missing.status_code == 404
    assert "No alert rule 'alr_nothere' of yours" in html.unescape(missing.text)


async def test_tiers_without_alerts_are_told_which_tier_unlocks_them(site: Site) -> None:
    csrf = await sign_in(site, "personal@example.com", Tier.PERSONAL)
    page = await site.http.get("/dashboard/alerts")
    assert page.status_code == 200
    assert "Your personal plan keeps no alert rules. The team plan and above do" in page.text
    assert 'id="create-alert"' not in page.text
    # The gate refuses a post all the same (the form is not what stops it).
    refused = await site.http.post("/dashboard/alerts", data=form(csrf, name="x"))
    assert refused.status_code == 403
    assert "create_alert needs the team tier or above; this caller is on personal" in refused.text
    assert await rule_count(site) == 0


async def test_every_alert_form_needs_the_csrf_token(site: Site) -> None:
    csrf = await sign_in(site, "csrf@example.com", Tier.TEAM)
    made = await site.http.post("/dashboard/alerts", data=form(csrf, name="mine"))
    [alert_id] = re.findall(r"kamiyo://alerts/(alr_[A-Za-z0-9_-]+)", made.text)[:1]
    for path in (
        "/dashboard/alerts",
        f"/dashboard/alerts/{alert_id}/test",
        f"/dashboard/alerts/{alert_id}/delete",
    ):
        for forged in ({}, {"csrf_token": "0" * 64}):
            answer = await site.http.post(path, data=form("", name="forged") | forged)
            assert answer.status_code == 403, path
            assert "This form has expired" in answer.text
    assert await rule_count(site) == 1

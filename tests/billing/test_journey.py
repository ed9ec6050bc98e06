"""A customer's whole way through the real HTTP app: sign up, subscribe, upgrade, fail a payment,
cancel, come back. Stripe's side is its signed webhook deliveries and the fake API; mail goes to a
real SMTP server; tools are called over MCP at /mcp."""

import html
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from kamiyo.mcpserver.server import build_server
from kamiyo.web.app import create_app
from tests.billing.conftest import PUBLIC_URL, billing_settings
from tests.billing.smtp import Mailbox
from tests.billing.stripe_fake import FakeStripe
from tests.billing.test_webhooks import (
    PRICES,
    SECRET,
    checkout_event,
    encode,
    invoice_event,
    sign,
    subscription_event,
)

pytestmark = pytest.mark.anyio

KEY_IN_PAGE = re.compile(r'<pre id="key">([^<]+)</pre>')
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-11-25",
}
RISK = ("assess_protocol_risk", {"protocol_name": "Euler"})
WALLET = (
    "check_wallet_interactions",
    {"wallet_address": "0x2419432344b0b892e592b2601b98eae702ba360e"},
)


class Customer:
    def __init__(self, http: httpx2.AsyncClient, mailbox: Mailbox) -> None:
        self.http = http
        self.mailbox = mailbox
        self.key = ""
        self.clock = int(time.time()) - 3600  # Stripe times of the deliveries, in order

    async def key_from_latest_mail(self, mails: int) -> str:
        mail = (await self.mailbox.arrived(mails))[mails - 1]
        [link] = mail.reveal_links()
        path = link.removeprefix(PUBLIC_URL)
        page = await self.http.post(path)
        assert page.status_code == 200, page.text
        found = KEY_IN_PAGE.search(page.text)
        assert found is not None
        return html.unescape(found.group(1))

    async def call(self, tool: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        name, arguments = tool
        response = await self.http.post(
            "/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            },
            headers=MCP_HEADERS | {"Authorization": f"Bearer {self.key}"},
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["result"]
        return result

    async def can(self, tool: tuple[str, dict[str, Any]]) -> bool:
        result = await self.call(tool)
        if result.get("isError"):
            assert result["structuredContent"]["error"] == "forbidden", result
            return False
        return True

    async def stripe_sends(self, event: dict[str, Any]) -> None:
        payload = encode(event)
        response = await self.http.post(
            "/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text

    def tick(self) -> int:
        self.clock += 60
        return self.clock


@pytest.fixture
async def customer(
    empty_database_url: str, fake_stripe: FakeStripe, mailbox: Mailbox
) -> AsyncIterator[Customer]:
    settings = billing_settings(
        empty_database_url,
        fake_stripe,
        mailbox,
        stripe={"webhook_secret": SecretStr(SECRET), "prices": PRICES},
        auth={"tier_cache_s": 0},  # see each change on the very next call
    )
    app = create_app(settings, build_server, stateless=True, json_response=True)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.9", 40000))
        # A loopback Host: the MCP endpoint's DNS-rebinding guard lets only those in.
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000"
        ) as http:
            yield Customer(http, mailbox)


async def test_subscribe_upgrade_fail_cancel_and_come_back(
    customer: Customer, fake_stripe: FakeStripe
) -> None:
    # Sign up: a free key from the mailed one-time link.
    answer = await customer.http.post("/api/v1/signup", json={"email": "journey@example.com"})
    assert answer.status_code == 202
    customer.key = await customer.key_from_latest_mail(1)
    assert not await customer.can(RISK)

    # Subscribe to personal: checkout, then Stripe's deliveries.
    checkout = await customer.http.post(
        "/api/v1/billing/checkout",
        json={"tier": "personal"},
        headers={"Authorization": f"Bearer {customer.key}"},
    )
    assert checkout.status_code == 200, checkout.text
    [sent] = fake_stripe.posts("/v1/checkout/sessions")
    account_pk = int(sent.nested("metadata")["account_pk"])
    await customer.stripe_sends(checkout_event(account_pk, created=customer.tick()))
    await customer.stripe_sends(
        subscription_event("created", account_pk, created=customer.tick(), tier="personal")
    )
    welcome = (await customer.mailbox.arrived(2))[1]  # sent by the app's alerts worker
    assert "claude_desktop_config.json" in welcome.text or "mcpServers" in welcome.text
    assert customer.key not in welcome.text  # the mail carries a link, never a key
    assert await customer.can(RISK)  # the same key, now personal
    search = await customer.call(("search_exploits", {"limit": 500}))
    assert search["structuredContent"]["limit"] == 50
    assert not await customer.can(WALLET)

    # Upgrade to team: wallet screening unlocks on the next call.
    await customer.stripe_sends(
        subscription_event("updated", account_pk, created=customer.tick(), tier="team")
    )
    assert await customer.can(WALLET)

    # A failed renewal keeps access through the grace period; paying restores it fully.
    await customer.stripe_sends(invoice_event("payment_failed", created=customer.tick()))
    assert await customer.can(WALLET)
    await customer.stripe_sends(invoice_event("paid", created=customer.tick()))
    assert await customer.can(WALLET)

    # Cancel: the tools lock. A late delivery of an older update does not unlock them.
    stale = subscription_event("updated", account_pk, created=customer.tick(), tier="team")
    await customer.stripe_sends(
        subscription_event("deleted", account_pk, created=customer.tick(), tier="team")
    )
    await customer.stripe_sends(stale)
    assert not await customer.can(RISK)
    assert not await customer.can(WALLET)

    # Resubscribe: a new subscription for the same account works again.
    await customer.stripe_sends(
        subscription_event(
            "created", account_pk, created=customer.tick(), tier="personal", sub="sub_test_2"
        )
    )
    assert await customer.can(RISK)
    assert not await customer.can(WALLET)

"""The account and billing routes: in process through the ASGI app (with its lifespan), and
once end to end through ``kamiyo serve`` with a fake Stripe and a real SMTP server."""

import asyncio
import datetime as dt
import html
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys
from kamiyo.billing import stripe_api
from kamiyo.config import Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.tables import KeyReveal, Subscription
from kamiyo.mcpserver.server import build_server
from kamiyo.tiers import Tier
from kamiyo.web.api import MAX_BODY_BYTES, SIGNUP_ANSWER
from kamiyo.web.app import create_app
from tests.billing.conftest import PRICES, PUBLIC_URL, billing_settings
from tests.billing.smtp import Mailbox, Received
from tests.billing.stripe_fake import FakeStripe
from tests.mcpserver.conftest import running_http_server

pytestmark = pytest.mark.anyio

Sessions = async_sessionmaker[AsyncSession]
CHECKOUT = "/api/v1/billing/checkout"
PORTAL = "/api/v1/billing/portal"
KEY_IN_PAGE = re.compile(r'<pre id="key">([^<]+)</pre>')


@dataclass
class Api:
    http: httpx2.AsyncClient
    settings: Settings
    sessions: Sessions  # the app's database, opened separately
    stripe: FakeStripe
    mailbox: Mailbox

    async def account_with_key(self, email: str, tier: Tier = Tier.PERSONAL) -> tuple[int, str]:
        async with self.sessions() as session:
            account = await accounts.create_account(session, email, tier)
            new = await keys.create_key(session, account, "test")
            await session.commit()
            return account.pk, new.key

    async def set_stripe_state(self, account_pk: int, **fields: object) -> None:
        async with self.sessions() as session:
            await session.execute(
                update(Subscription).where(Subscription.account_pk == account_pk).values(**fields)
            )
            await session.commit()

    async def signup_link(self, email: str) -> str:
        """Sign up through the API; the path of the link the mail carries."""
        before = len(self.mailbox.received)
        response = await self.http.post("/api/v1/signup", json={"email": email})
        assert response.status_code == 202
        return link_path(self.mailbox.wait_for(before + 1)[before])


def link_path(mail: Received) -> str:
    [link] = mail.reveal_links()
    assert link.startswith(PUBLIC_URL)
    return link.removeprefix(PUBLIC_URL)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def api(
    loaded_database_url: str, fake_stripe: FakeStripe, mailbox: Mailbox
) -> AsyncIterator[Api]:
    settings = billing_settings(loaded_database_url, fake_stripe, mailbox)
    app = create_app(settings, build_server)
    # ASGITransport sends no lifespan events: run the app's own start-up and shut-down.
    async with app.router.lifespan_context(app):
        engine = create_engine(loaded_database_url)
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.7", 40000))
        try:
            async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
                yield Api(http, settings, session_factory(engine), fake_stripe, mailbox)
        finally:
            await engine.dispose()


# --- sign-up ---------------------------------------------------------------------------


async def test_signup_answers_alike_for_new_and_known_addresses(api: Api) -> None:
    answers = [
        await api.http.post("/api/v1/signup", json={"email": email})
        for email in ("alike@example.com", "Alike@Example.com", "other@example.com")
    ]
    assert {(r.status_code, r.text) for r in answers} == {(202, answers[0].text)}
    assert answers[0].json() == SIGNUP_ANSWER
    mails = api.mailbox.wait_for(3)
    assert [m.recipients for m in mails] == [["alike@example.com"]] * 2 + [["other@example.com"]]
    async with api.sessions() as session:
        assert await accounts.find_account(session, "ALIKE@example.com") is not None
    assert "already has a KAMIYO account" in mails[1].text


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b'{"email": "not-an-address"}', {}, 400, "invalid_email"),
        (b'{"email": "a\\u0000b@example.com"}', {}, 400, "invalid_email"),
        (b'{"email": "a\\ud800b@example.com"}', {}, 400, "invalid_email"),
        (b'{"email": 7}', {}, 400, "invalid_request"),
        (b"{}", {}, 400, "invalid_request"),
        (b'{"email": ', {}, 400, "invalid_json"),
        (b'["a@example.com"]', {}, 400, "invalid_request"),
        (b"email=a@example.com", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         "unsupported_media_type"),
        (b'{"email": "' + b"a" * MAX_BODY_BYTES + b'"}', {}, 413, "payload_too_large"),
    ],
)  # fmt: skip
async def test_bad_signup_requests_get_clear_errors(
    api: Api, body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    response = await api.http.post(
        "/api/v1/signup", content=body, headers={"Content-Type": "application/json"} | headers
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == error
    assert "Traceback" not in response.text
    assert api.mailbox.received == []


async def test_a_body_without_length_is_capped_too(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    response = await api.http.post("/api/v1/signup", content=chunks())
    assert response.status_code == 413


async def test_signups_from_one_peer_are_limited(api: Api) -> None:
    statuses = [
        (await api.http.post("/api/v1/signup", json={"email": f"p{i}@example.com"})).status_code
        for i in range(6)
    ]
    assert statuses == [202] * 5 + [429]
    response = await api.http.post("/api/v1/signup", json={"email": "late@example.com"})
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_signup_without_a_public_url_is_unavailable(
    loaded_database_url: str, fake_stripe: FakeStripe, mailbox: Mailbox
) -> None:
    settings = billing_settings(
        loaded_database_url, fake_stripe, mailbox, site={"public_url": None}
    )
    app = create_app(settings, build_server)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.post("/api/v1/signup", json={"email": "a@example.com"})
    assert response.status_code == 503
    assert mailbox.received == []


# --- one-time key links ----------------------------------------------------------------


async def test_a_link_shows_a_button_then_a_working_key_once(api: Api) -> None:
    path = await api.signup_link("reveal@example.com")
    for _ in range(2):  # scanners and previews GET links: that uses nothing up
        page = await api.http.get(path)
        assert page.status_code == 200
        assert '<form method="post">' in page.text
        assert keys.KEY_PREFIX not in page.text
    shown = await api.http.post(path)
    assert shown.status_code == 200
    assert shown.headers["cache-control"] == "no-store"
    assert shown.headers["referrer-policy"] == "no-referrer"
    match = KEY_IN_PAGE.search(shown.text)
    assert match is not None
    key = html.unescape(match.group(1))
    # The key works: it identifies its account (which has not paid yet).
    portal = await api.http.post(PORTAL, headers=bearer(key))
    assert portal.status_code == 409
    for method in ("POST", "GET"):
        again = await api.http.request(method, path)
        assert again.status_code == 410
        assert "used or has expired" in again.text
        assert keys.KEY_PREFIX not in again.text


async def test_concurrent_posts_to_a_link_show_one_key(api: Api) -> None:
    await api.account_with_key("many@example.com", Tier.ENTERPRISE)  # unlimited seats
    path = await api.signup_link("many@example.com")
    pages = await asyncio.gather(*(api.http.post(path) for _ in range(5)))
    assert sorted(p.status_code for p in pages) == [200, 410, 410, 410, 410]


async def test_an_expired_link_is_gone(api: Api) -> None:
    path = await api.signup_link("expired@example.com")
    async with api.sessions() as session:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        await session.execute(update(KeyReveal).values(expires_at=past))
        await session.commit()
    assert (await api.http.get(path)).status_code == 410
    assert (await api.http.post(path)).status_code == 410
    assert (await api.http.post("/keys/reveal/not-a-token")).status_code == 410


async def test_a_full_account_is_told_so_with_everything_escaped(api: Api) -> None:
    address = "<b>x</b>@example.com"  # a valid-looking address that is also markup
    path = await api.signup_link(address)
    async with api.sessions() as session:
        account = await accounts.find_account(session, address)
        assert account is not None
        await keys.create_key(session, account, "meanwhile")
        await session.commit()
    page = await api.http.post(path)
    assert page.status_code == 409
    assert "<b>x</b>" not in page.text
    assert "&lt;b&gt;x&lt;/b&gt;@example.com already has 1 active key(s)" in page.text
    assert (await api.http.get(path)).status_code == 200  # still usable later


# --- checkout and portal ---------------------------------------------------------------


async def test_checkout_with_a_personal_key_opens_stripe_checkout(api: Api) -> None:
    account_pk, key = await api.account_with_key("buyer@example.com")
    response = await api.http.post(CHECKOUT, json={"tier": "personal"}, headers=bearer(key))
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    assert url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    [sent] = api.stripe.posts("/v1/checkout/sessions")
    assert sent.headers["authorization"] == f"Bearer {api.stripe.secret_key}"
    assert sent.headers["idempotency-key"].startswith("kamiyo-")
    assert sent.form["mode"] == "subscription"
    assert sent.form["line_items[0][price]"] == PRICES["personal"]
    assert sent.form["line_items[0][quantity]"] == "1"
    assert sent.form["client_reference_id"] == str(account_pk)
    metadata = {"account_pk": str(account_pk), "tier": "personal"}
    assert sent.nested("metadata") == metadata
    assert sent.nested("subscription_data[metadata]") == metadata
    assert sent.form["customer_email"] == "buyer@example.com"
    assert "customer" not in sent.form
    assert sent.form["success_url"] == api.settings.stripe.checkout_success_url
    assert sent.form["cancel_url"] == api.settings.stripe.checkout_cancel_url


async def test_a_double_click_gets_the_same_checkout(api: Api) -> None:
    _, key = await api.account_with_key("double@example.com")
    urls = [
        (await api.http.post(CHECKOUT, json={"tier": "personal"}, headers=bearer(key))).json()
        for _ in range(2)
    ]
    assert urls[0] == urls[1]
    first, second = api.stripe.posts("/v1/checkout/sessions")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_a_returning_customer_checks_out_as_that_customer(api: Api) -> None:
    account_pk, key = await api.account_with_key("back@example.com")
    await api.set_stripe_state(account_pk, status="canceled", stripe_customer_id="cus_back1")
    response = await api.http.post(CHECKOUT, json={"tier": "enterprise"}, headers=bearer(key))
    assert response.status_code == 200
    [sent] = api.stripe.posts("/v1/checkout/sessions")
    assert sent.form["customer"] == "cus_back1"
    assert "customer_email" not in sent.form
    assert sent.form["line_items[0][price]"] == PRICES["enterprise"]


async def test_a_live_subscription_is_changed_in_the_portal_not_bought_twice(api: Api) -> None:
    account_pk, key = await api.account_with_key("subscribed@example.com")
    await api.set_stripe_state(
        account_pk, stripe_customer_id="cus_sub1", stripe_subscription_id="sub_1"
    )
    response = await api.http.post(CHECKOUT, json={"tier": "enterprise"}, headers=bearer(key))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_subscribed"
    assert api.stripe.requests == []


@pytest.mark.parametrize(
    ("tier", "status", "error"),
    [
        ("free", 400, "invalid_tier"),
        ("platinum", 400, "invalid_tier"),
        ("team", 400, "invalid_tier"),  # a tier with no price configured
    ],
)
async def test_tiers_that_cannot_be_bought_are_refused(
    api: Api, tier: str, status: int, error: str
) -> None:
    _, key = await api.account_with_key(f"{tier}@example.com")
    response = await api.http.post(CHECKOUT, json={"tier": tier}, headers=bearer(key))
    assert response.status_code == status
    assert response.json()["error"]["code"] == error
    assert api.stripe.requests == []


@pytest.mark.parametrize("path", [CHECKOUT, PORTAL])
async def test_billing_needs_an_account(api: Api, path: str) -> None:
    anonymous = await api.http.post(path, json={"tier": "personal"})
    assert anonymous.status_code == 401
    challenge = anonymous.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{PUBLIC_URL}/.well-known/oauth-protected-resource"' in challenge
    unknown = await api.http.post(
        path, json={"tier": "personal"}, headers=bearer(keys.KEY_PREFIX + "x" * 43)
    )
    assert unknown.status_code == 401
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
    assert api.stripe.requests == []


async def test_stripe_failing_is_a_502_that_tells_nothing_secret(api: Api) -> None:
    _, key = await api.account_with_key("outage@example.com")
    api.stripe.fail_next(500, retry=False)
    response = await api.http.post(CHECKOUT, json={"tier": "personal"}, headers=bearer(key))
    assert response.status_code == 502
    body = response.json()
    assert body["error"]["code"] == "payment_service_error"
    assert "try again" in body["error"]["message"]
    assert api.stripe.secret_key not in response.text
    assert "Fake Stripe" not in response.text  # Stripe's own words stay in the log


async def test_a_refused_stripe_key_is_a_502_too(api: Api) -> None:
    _, key = await api.account_with_key("badkey@example.com")
    api.stripe.secret_key = "sk_test_some_other_key"  # so ours is refused, as by Stripe
    response = await api.http.post(CHECKOUT, json={"tier": "personal"}, headers=bearer(key))
    assert response.status_code == 502
    assert api.settings.stripe.secret_key is not None
    assert api.settings.stripe.secret_key.get_secret_value() not in response.text


async def test_a_retried_checkout_keeps_its_idempotency_key(api: Api) -> None:
    _, key = await api.account_with_key("retry@example.com")
    api.stripe.fail_next(500, retry=True)  # Stripe asks for a retry; the library obliges
    response = await api.http.post(CHECKOUT, json={"tier": "personal"}, headers=bearer(key))
    assert response.status_code == 200
    first, second = api.stripe.posts("/v1/checkout/sessions")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_the_portal_needs_a_stripe_customer(api: Api) -> None:
    account_pk, key = await api.account_with_key("portal@example.com")
    before = await api.http.post(PORTAL, headers=bearer(key))
    assert before.status_code == 409
    assert before.json()["error"]["code"] == "no_billing_account"
    await api.set_stripe_state(account_pk, stripe_customer_id="cus_portal1")
    after = await api.http.post(PORTAL, headers=bearer(key))
    assert after.status_code == 200
    assert after.json()["url"].startswith("https://billing.stripe.com/p/session/")
    [sent] = api.stripe.posts("/v1/billing_portal/sessions")
    assert sent.form == {
        "customer": "cus_portal1",
        "return_url": api.settings.stripe.portal_return_url,
    }


async def test_without_a_stripe_key_billing_is_unavailable(
    loaded_database_url: str, fake_stripe: FakeStripe, mailbox: Mailbox
) -> None:
    settings = billing_settings(
        loaded_database_url, fake_stripe, mailbox, stripe={"secret_key": None}
    )
    app = create_app(settings, build_server)
    async with app.router.lifespan_context(app):
        engine = create_engine(loaded_database_url)
        try:
            async with session_factory(engine)() as session:
                account = await accounts.create_account(session, "nokey@example.com")
                key = (await keys.create_key(session, account, "k")).key
                await session.commit()
        finally:
            await engine.dispose()
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.post(CHECKOUT, json={"tier": "personal"}, headers=bearer(key))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "billing_unavailable"


def test_idempotency_keys_change_with_the_request_and_the_minute() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 5, tzinfo=dt.UTC)
    same = stripe_api.idempotency_key("checkout", 1, "personal", now=now)
    assert same == stripe_api.idempotency_key(
        "checkout", 1, "personal", now=now + dt.timedelta(seconds=30)
    )
    assert same != stripe_api.idempotency_key("checkout", 1, "team", now=now)
    assert same != stripe_api.idempotency_key(
        "checkout", 1, "personal", now=now + dt.timedelta(minutes=2)
    )


# --- end to end ------------------------------------------------------------------------


def test_signup_reveal_and_checkout_through_a_real_server(
    tmp_path: Path, fake_stripe: FakeStripe, mailbox: Mailbox
) -> None:
    env = mailbox.env() | {
        "KAMIYO_PUBLIC_URL": PUBLIC_URL,
        "KAMIYO_STRIPE_SECRET_KEY": fake_stripe.secret_key,
        "KAMIYO_STRIPE_API_BASE": fake_stripe.url,
        "KAMIYO_STRIPE_PRICES": json.dumps(PRICES),
    }
    with running_http_server(tmp_path, [], env=env) as url, httpx2.Client(base_url=url) as http:
        answer = http.post("/api/v1/signup", json={"email": "e2e@example.com"})
        assert (answer.status_code, answer.json()) == (202, SIGNUP_ANSWER)
        [mail] = mailbox.wait_for(1)  # sent after the answer
        path = link_path(mail)
        assert http.get(path).status_code == 200
        shown = http.post(path)
        assert shown.status_code == 200
        match = KEY_IN_PAGE.search(shown.text)
        assert match is not None
        key = html.unescape(match.group(1))
        checkout = http.post(CHECKOUT, json={"tier": "personal"}, headers=bearer(key))
        assert checkout.status_code == 200, checkout.text
        assert http.post(path).status_code == 410
    [sent] = fake_stripe.posts("/v1/checkout/sessions")
    assert sent.nested("metadata") == {"account_pk": "1", "tier": "personal"}
    assert sent.form["customer_email"] == "e2e@example.com"
    assert checkout.json()["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    log = (tmp_path / "server.log").read_text()
    assert "/keys/reveal/[token]" in log  # the access log names the route...
    assert path.rsplit("/", 1)[1] not in log  # ...never the link's token
    assert key not in log
    assert fake_stripe.secret_key not in log

"""Calls KAMIYO makes to Stripe: start a Checkout for a paid tier, open the customer portal.

Nothing here decides what an account holds: Stripe's webhooks do (webhooks.py). These calls only
send a person to a page Stripe hosts.

The library's async methods need ``httpx`` or ``aiohttp``, neither of which KAMIYO depends on,
so the synchronous client runs in a worker thread. Each call gets its own HTTP client, closed
afterwards: checkouts are rare, and a pooled connection would outlive a test's fake Stripe.
"""

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import stripe

from kamiyo.config import SiteSettings, StripeSettings
from kamiyo.db.tables import Account
from kamiyo.tiers import Tier

log = logging.getLogger(__name__)

T = TypeVar("T")

STRIPE_TIMEOUT_S = 20.0  # a person waits on this call; Stripe's default is 80 s
NETWORK_RETRIES = 2  # retried with the same idempotency key, so a retry never doubles anything
# Clicks on "upgrade" for the same account and tier within this many seconds share one
# idempotency key, so Stripe answers a double click with the session it already made.
IDEMPOTENCY_WINDOW_S = 60


class BillingError(Exception):
    """A billing request that failed; the message is safe to show to the person asking."""


class PlanError(BillingError):
    """The request itself is wrong (a tier that cannot be bought); asking again will not help."""


class BillingUnavailableError(BillingError):
    """This server is not set up to take payments (no Stripe key, no return address)."""


class StripeCallError(BillingError):
    """Stripe could not be reached or refused the call; the cause is in the log, not here."""


def checkout_price(billing: StripeSettings, tier: str) -> str:
    """The Stripe price id for ``tier``, or a PlanError saying why there is none."""
    try:
        chosen = Tier(tier)
    except ValueError:
        paid = ", ".join(t.value for t in Tier if t is not Tier.FREE)
        raise PlanError(f"{tier!r} is not a tier; choose one of {paid}") from None
    if chosen is Tier.FREE:
        raise PlanError("the free tier needs no checkout; choose a paid tier")
    price = billing.prices.get(chosen.value)
    if not price:
        # The operator's choice (or oversight): say so in the log, refuse like an unknown tier.
        log.warning("no Stripe price for the %s tier in KAMIYO_STRIPE_PRICES", chosen.value)
        raise PlanError(f"the {chosen.value} tier is not sold on this server")
    return price


def idempotency_key(*parts: object, now: dt.datetime | None = None) -> str:
    """One key per distinct request within a short time bucket.

    Every request parameter that can change goes into ``parts``: Stripe refuses a reused key
    whose parameters differ, so a changed request must get a new key.
    """
    moment = now or dt.datetime.now(dt.UTC)
    bucket = int(moment.timestamp()) // IDEMPOTENCY_WINDOW_S
    digest = hashlib.sha256("\x1f".join(map(str, (*parts, bucket))).encode()).hexdigest()
    return f"kamiyo-{digest[:48]}"


async def create_checkout_session(
    billing: StripeSettings,
    site: SiteSettings,
    account: Account,
    tier: str,
    *,
    customer_id: str | None = None,
) -> str:
    """A Stripe Checkout URL where ``account`` subscribes to ``tier``.

    ``customer_id`` is the account's Stripe customer when it has one, so a returning subscriber
    keeps one customer (and one portal) instead of getting a second.
    """
    price = checkout_price(billing, tier)
    success_url = billing.checkout_success_url or _dashboard_url(site, "?checkout=success")
    cancel_url = billing.checkout_cancel_url or _dashboard_url(site, "?checkout=cancelled")
    if not success_url or not cancel_url:
        raise BillingUnavailableError(
            "checkout is not set up on this server (no return address after payment)"
        )
    metadata = {"account_pk": str(account.pk), "tier": tier}
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": price, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        # Webhooks find the account by these, whichever object they carry.
        "client_reference_id": str(account.pk),
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
    }
    if customer_id:
        params["customer"] = customer_id
    else:
        params["customer_email"] = account.email
    key = idempotency_key("checkout", account.pk, tier, price, customer_id or account.email)

    def call(client: stripe.StripeClient) -> str:
        session = client.v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]  # a plain dict of the documented fields
            options={"idempotency_key": key},
        )
        if not session.url:
            raise StripeCallError("Stripe made a checkout without a payment page")
        return session.url

    return await call_stripe(billing, f"checkout for account {account.pk}", call)


async def create_portal_session(
    billing: StripeSettings, site: SiteSettings, customer_id: str
) -> str:
    """A Stripe customer portal URL for ``customer_id`` (change plan, card, cancel)."""
    params: dict[str, Any] = {"customer": customer_id}
    return_url = billing.portal_return_url or _dashboard_url(site)
    if return_url:
        params["return_url"] = return_url

    def call(client: stripe.StripeClient) -> str:
        session = client.v1.billing_portal.sessions.create(params=params)  # type: ignore[arg-type]
        return session.url

    return await call_stripe(billing, f"portal for customer {customer_id}", call)


def _dashboard_url(site: SiteSettings, query: str = "") -> str | None:
    return f"{site.public_url.rstrip('/')}/dashboard{query}" if site.public_url else None


async def call_stripe(
    billing: StripeSettings, what: str, call: Callable[[stripe.StripeClient], str]
) -> str:
    if billing.secret_key is None:
        raise BillingUnavailableError("payments are not set up on this server")
    secret = billing.secret_key.get_secret_value()

    def run() -> str:
        http_client = stripe.RequestsClient(timeout=STRIPE_TIMEOUT_S)
        client = stripe.StripeClient(
            secret,
            base_addresses={"api": billing.api_base} if billing.api_base else None,
            max_network_retries=NETWORK_RETRIES,
            http_client=http_client,
        )
        try:
            return call(client)
        finally:
            # In this thread: the library keeps one session per thread.
            http_client.close()  # type: ignore[no-untyped-call]

    try:
        return await anyio.to_thread.run_sync(run)
    except stripe.StripeError as exc:
        # Stripe's own text goes to the log for the operator (it can name prices and
        # customers; Stripe masks keys, and this masks ours again); the person gets a sentence.
        detail = (exc.user_message or type(exc).__name__).replace(secret, "[secret key]")
        log.warning(
            "Stripe refused the %s: %s (%s, HTTP %s, request %s)",
            what,
            detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__,
            type(exc).__name__,
            exc.http_status,
            exc.request_id,
        )
        raise StripeCallError(
            "the payment service could not be reached or refused the request; try again in a minute"
        ) from None

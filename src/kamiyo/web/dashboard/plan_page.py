"""``/dashboard/plan``: the account's tier, what each tier allows and unlocks (from ``TIERS``
and the catalogue), and buttons to Stripe: Checkout for an account without a subscription, the
customer portal (change plan, card, cancel) for one with a Stripe customer.

The buttons post here and are answered with a redirect to Stripe's page, made by the same
``billing.stripe_api`` calls as the JSON routes of ``web/api.py``. The portal's address is a
single-use credential: it goes only into the Location header, never into a log line.
"""

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kamiyo.access.accounts import current_tier
from kamiyo.billing import stripe_api
from kamiyo.db.tables import Subscription
from kamiyo.service.catalogue import unlocked_by
from kamiyo.tiers import TIERS, Tier, TierPolicy
from kamiyo.web.api import LIVE_STRIPE_STATES
from kamiyo.web.dashboard import render
from kamiyo.web.dashboard.viewer import Dashboard, Viewer, read_form

log = logging.getLogger(__name__)

StripeUrl = Coroutine[Any, Any, str]  # a pending stripe_api call that answers a page's URL
BILLING_OFF = "Billing is not set up on this server, so plans cannot be bought or changed here."


@dataclass(frozen=True, slots=True)
class TierRow:
    tier: Tier
    policy: TierPolicy
    adds: list[str]  # what it unlocks beyond the tier below
    for_sale: bool  # a Stripe price is configured


class PlanPage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.stripe = dashboard.settings.stripe

    async def show(
        self, request: Request, viewer: Viewer, *, error: str | None = None, status: int = 200
    ) -> Response:
        tier, subscription = await self._holding(viewer)
        rows, below = [], set[str]()
        for each, policy in TIERS.items():
            names = [name.value for name in unlocked_by(each)]
            rows.append(
                TierRow(each, policy, [n for n in names if n not in below], bool(self._price(each)))
            )
            below.update(names)
        subscribed = (
            subscription is not None
            and bool(subscription.stripe_subscription_id)
            and subscription.status in LIVE_STRIPE_STATES
        )
        context = viewer.context(
            tier=tier,
            tiers=rows,
            subscription=subscription,
            billing_on=self.stripe.secret_key is not None,
            billing_off=BILLING_OFF,
            can_checkout=not subscribed,
            has_portal=subscription is not None and bool(subscription.stripe_customer_id),
            error=error,
        )
        return render.page(request, "plan.html", context, status=status, stripe_forms=True)

    async def checkout(self, request: Request, viewer: Viewer) -> Response:
        chosen = (await read_form(request)).get("tier")
        _, subscription = await self._holding(viewer)
        if (
            subscription is not None
            and subscription.stripe_subscription_id
            and subscription.status in LIVE_STRIPE_STATES
        ):
            return await self.show(
                request,
                viewer,
                error="This account already has a subscription: change plans in the billing "
                "portal.",
                status=409,
            )
        customer = subscription.stripe_customer_id if subscription is not None else None
        return await self._to_stripe(
            request,
            viewer,
            stripe_api.create_checkout_session(
                self.stripe,
                self.dashboard.settings.site,
                viewer.account,
                chosen if isinstance(chosen, str) else "",
                customer_id=customer,
            ),
        )

    async def portal(self, request: Request, viewer: Viewer) -> Response:
        _, subscription = await self._holding(viewer)
        if subscription is None or not subscription.stripe_customer_id:
            return await self.show(
                request,
                viewer,
                error="This account has never paid through Stripe, so it has no billing portal "
                "yet: subscribe first.",
                status=409,
            )
        return await self._to_stripe(
            request,
            viewer,
            stripe_api.create_portal_session(
                self.stripe, self.dashboard.settings.site, subscription.stripe_customer_id
            ),
        )

    async def _to_stripe(self, request: Request, viewer: Viewer, call: StripeUrl) -> Response:
        try:
            url = await call
        except stripe_api.PlanError as exc:
            return await self.show(request, viewer, error=f"{exc}.", status=400)
        except stripe_api.BillingUnavailableError:
            return await self.show(request, viewer, error=BILLING_OFF, status=503)
        except stripe_api.BillingError as exc:
            return await self.show(request, viewer, error=f"{exc}.", status=502)
        # 303, so the browser follows with a GET; the URL itself is logged nowhere.
        return RedirectResponse(url, 303, headers=render.headers())

    async def _holding(self, viewer: Viewer) -> tuple[Tier, Subscription | None]:
        async with self.dashboard.database() as session:
            tier = await current_tier(
                session, viewer.account, self.dashboard.onboarding.past_due_grace
            )
            subscription = await session.get(Subscription, viewer.account.pk)
        return tier, subscription

    def _price(self, tier: Tier) -> str | None:
        return None if tier is Tier.FREE else self.stripe.prices.get(tier.value)

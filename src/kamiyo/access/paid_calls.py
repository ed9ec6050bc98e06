"""Calls paid for on their own: one x402 payment per call, or a call from a bundle.

The account gate hands a call here when it is to be paid for (no credential and a priced tool,
or a tier that does not unlock it). Payments offered from one client address are limited
before they are verified (``PAYMENT_ATTEMPTS``: a flood of invalid ones runs no RPC), and paid
calls per payer once verified (``PAID_CALLS``). A call asking for a pack is quoted the pack's
price; the payment that settles it buys the bundle, whose token pays for the pack's other calls.
"""

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.gate import (
    PAID_TIER,
    Admission,
    Call,
    Completed,
    Grant,
    Identity,
    Refusal,
    RefusalReason,
    Replayed,
)
from kamiyo.access.limiter import Limiter, over_payment_limit
from kamiyo.access.meter import Receipt
from kamiyo.access.receipts import settled_receipt
from kamiyo.config import Settings
from kamiyo.payments import bundles
from kamiyo.payments.bundles import BundleState
from kamiyo.payments.outcomes import Answered, Declined, Hold, NotSettled, Quote
from kamiyo.payments.prices import BUNDLE_LIFETIME, PAID_MAX_RESULTS
from kamiyo.tiers import PAID_CALLS, PAYMENT_ATTEMPTS

if TYPE_CHECKING:  # x402's machinery loads only where x402 is on (service/state.py)
    from kamiyo.payments.cashier import Cashier

log = logging.getLogger(__name__)

# How the gate meters a call that was not admitted: (call, identity, status).
MeterRefusal = Callable[[Call, Identity | None, str], None]


class PaidCalls:
    def __init__(
        self,
        settings: Settings,
        cashier: "Cashier",
        limiter: Limiter,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        meter: MeterRefusal,
    ) -> None:
        self._settings = settings
        self.cashier = cashier
        self.limiter = limiter
        self._sessions = sessions
        self._meter = meter

    async def complete(
        self, grant: Grant, outcome: str, answer: Mapping[str, Any] | None
    ) -> tuple[Completed | Refusal, Receipt | None]:
        """Settle or release the call's payment, or give its bundle call back if it failed:
        what the caller is told, and the receipt its usage record carries."""
        if grant.bundle is not None:
            taken = grant.bundle
            if outcome != "ok":  # the tool failed: its call goes back into the bundle
                taken = await bundles.give_back(self._sessions(), taken)
            return Completed(bundle=BundleState.of(taken)), None
        hold = grant.payment
        assert hold is not None  # the gate asks only for calls with a payment or a bundle
        sessions = self._sessions()
        if outcome != "ok":  # the tool failed: the payment is not taken
            await self.cashier.release(hold, "tool_failed", sessions)
            return Completed(), None
        settled = await self.cashier.settle(hold, answer, sessions)
        if isinstance(settled, NotSettled):
            return payment_refusal(self.cashier.not_settled(hold, settled.reason)), None
        completed = Completed(settled.receipt, await self._bought(hold))
        return completed, settled_receipt(hold, settled.receipt)

    def quote(self, call: Call) -> Quote | None:
        """What the call would cost paid on its own (or with the pack it asks to buy), or None
        when it cannot be paid for."""
        price = call.target.price
        if price is None or call.resource is None:
            return None
        wanted = call.bundle.buy if call.bundle is not None else None
        pack = price.pack(wanted) if wanted is not None else None
        return self.cashier.quote(call.target.name, price, call.size, call.resource, pack)

    async def _bought(self, hold: Hold) -> BundleState | None:
        """The bundle a settled payment bought, if it paid for a pack of calls."""
        if hold.quote.pack_calls is None:
            return None
        token = self.cashier.bundle_token(hold.held.pk)
        balance = await bundles.issue(
            self._sessions(),
            token=token,
            payment_pk=hold.held.pk,
            tool=hold.quote.tool,
            calls=hold.quote.pack_calls,
            payer=hold.payer,
            network=hold.network,
            lifetime=BUNDLE_LIFETIME,
        )
        return BundleState.of(balance, token)

    async def _from_bundle(
        self, call: Call, identity: Identity | None, quote: Quote, token: str
    ) -> Admission:
        """Admit a call paid from a bundle, or ask for a payment saying why the bundle cannot."""
        assert call.target.price is not None
        taken = await bundles.redeem(self._sessions(), token, call.target.name)
        if isinstance(taken, bundles.Unusable):
            log.info("bundle for %s refused: %s", call.target.name, taken.reason)
            return self._ask(call, identity, quote, taken.explain())
        subject = f"payer:{taken.payer}"
        over = await self.limiter.hit(subject, PAID_CALLS)
        if over is not None:  # the payer's own limit holds for bundles too: the call goes back
            await bundles.give_back(self._sessions(), taken)
            refused = over_payment_limit(
                over, "paid calls from this payer", "taken from the bundle"
            )
            log.warning("bundle call of %s refused: %s", subject, refused.limit)
            self._meter(call, identity, refused.reason)
            return refused
        cap = call.target.price.pack_max_results
        return Grant(
            tier=PAID_TIER,
            max_results=min(cap, self._settings.answers.max_results),
            account_pk=identity.account_pk if identity else None,
            key_pk=identity.key_pk if identity else None,
            subject=subject,
            bundle=taken,
        )

    async def admit(self, call: Call, identity: Identity | None, quote: Quote) -> Admission:
        """Admit a call on its own x402 payment, or ask for one."""
        token = call.bundle.token if call.bundle is not None else None
        if token is not None and call.payment is None:
            return await self._from_bundle(call, identity, quote, token)
        wanted = call.bundle.buy if call.bundle is not None else None
        if wanted is not None and quote.pack_calls is None:
            return self._no_such_pack(call, identity, quote, wanted)
        if call.payment is None:
            return self._ask(call, identity, quote)
        # Before verifying (RPC reads): payments offered from this address, so that a flood of
        # invalid ones is refused here, nothing verified and nothing charged.
        attempts = await self.limiter.hit(f"payments:peer:{call.peer}", PAYMENT_ATTEMPTS)
        if attempts is not None:
            refused = over_payment_limit(attempts, "payments offered from this address", "verified")
            log.warning("payment from %s refused before verifying: %s", call.peer, refused.limit)
            self._meter(call, identity, refused.reason)
            return refused
        sessions = self._sessions()
        accepted = await self.cashier.accept(call.payment, quote, sessions)
        if isinstance(accepted, Declined):
            refusal = payment_refusal(accepted)
            self._meter(call, identity, refusal.reason)
            return refusal
        if isinstance(accepted, Answered):
            told = await self._told_again(accepted)
            return Replayed(accepted.answer, accepted.receipt, told, _late_receipt(accepted, quote))
        subject = f"payer:{accepted.payer}"
        over = await self.limiter.hit(subject, PAID_CALLS)
        if over is not None:  # the payer's own limit: the payment is released, not taken
            await self.cashier.release(accepted, RefusalReason.RATE_LIMITED.value, sessions)
            refused = over_payment_limit(over, "paid calls from this payer", "taken")
            log.warning("paid call of %s refused: %s", subject, refused.limit)
            self._meter(call, identity, refused.reason)
            return refused
        return Grant(
            tier=PAID_TIER,
            max_results=min(PAID_MAX_RESULTS, self._settings.answers.max_results),
            account_pk=identity.account_pk if identity else None,
            key_pk=identity.key_pk if identity else None,
            subject=subject,
            payment=accepted,
        )

    def _no_such_pack(
        self, call: Call, identity: Identity | None, quote: Quote, wanted: int
    ) -> Refusal:
        price = call.target.price
        sizes = ", ".join(str(pack.calls) for pack in price.packs) if price else ""
        offered = f"it sells packs of {sizes} calls" if sizes else "it sells no packs"
        return self._ask(
            call, identity, quote, f"No pack of {wanted} {call.target.name} calls: {offered}."
        )

    def _ask(
        self, call: Call, identity: Identity | None, quote: Quote, why: str | None = None
    ) -> Refusal:
        """Ask for the quoted payment, saying first ``why`` the call was not served otherwise."""
        said = self.cashier.ask(quote)
        asked = Refusal(
            RefusalReason.PAYMENT_REQUIRED,
            f"{why} {said}" if why else said,
            payment_required=quote.required,
        )
        self._meter(call, identity, asked.reason)
        return asked

    async def _told_again(self, answered: Answered) -> BundleState | None:
        """A retried payment that bought a pack is told its bundle (and token) again."""
        if answered.payment_pk is None:
            return None
        bought = await bundles.bought_with(self._sessions(), answered.payment_pk)
        if bought is None:
            return None
        return BundleState.of(bought, self.cashier.bundle_token(answered.payment_pk))


def _late_receipt(answered: Answered, quote: Quote) -> Receipt | None:
    """The receipt of a payment answered for the first time now (pending.py), else None."""
    settled = answered.receipt
    if not answered.first_time or settled is None or answered.payment_pk is None:
        return None
    return Receipt(
        answered.payment_pk, settled.network, settled.payer, quote.amount, settled.transaction
    )


def payment_refusal(declined: Declined) -> Refusal:
    return Refusal(
        RefusalReason.PAYMENT_REQUIRED, declined.message, payment_required=declined.required
    )

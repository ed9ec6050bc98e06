"""The gate for subscriptions: who is calling, which tier they hold now, what it allows.

Identify (API key, else JWT, else anonymous on the free tier when allowed) -> tier from the
subscription state, remembered for ``tier_cache_s`` seconds so an upgrade or a cancellation
takes effect within seconds without a database read on every call -> the caller's tier must
include the one the call's target names -> the account's requests per minute and per day -> a
grant with the tier's caps. Every call, admitted or refused, goes to the meter; so does a call
whose arguments were refused (``count_invalid``), after it is counted against the limits.

With x402 on, a call without a credential to a priced tool the free tier unlocks is answered on
the free tier (on every transport), its grant carrying the quote so the answer can say what
paying adds; one that carries a payment or a bundle, or asks for a tool the free tier lacks, is
paid for on its own (access/paid_calls.py).
"""

import datetime as dt
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias

from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys, revocation, tokens
from kamiyo.access.gate import (
    PAID_TIER,
    Admission,
    Call,
    Completed,
    Grant,
    Identity,
    LimitState,
    Outcome,
    Refusal,
    RefusalReason,
    Replayed,
)
from kamiyo.access.limiter import Limiter, limit_states
from kamiyo.access.meter import Meter, Receipt, UsageEvent
from kamiyo.access.paid_calls import PaidCalls
from kamiyo.access.usage import UsageReport, month_usage
from kamiyo.config import Settings
from kamiyo.db.bounds import unstorable
from kamiyo.db.engine import read_retrying
from kamiyo.payments.outcomes import Quote
from kamiyo.tiers import TIERS, Tier

if TYPE_CHECKING:  # x402's machinery loads only where x402 is on (service/state.py)
    from kamiyo.payments.cashier import Cashier

log = logging.getLogger(__name__)

UNKNOWN_TIER = "none"  # in usage records of callers who could not be identified


# For annotations only: calling a subscripted frozen dataclass fails at run time.
Remembered: TypeAlias = revocation.Remembered[Identity | Refusal]


class AccountGate:
    def __init__(self, settings: Settings, cashier: "Cashier | None" = None) -> None:
        self._settings = settings
        # Pay per call (x402): callers without an account, or whose tier does not unlock a
        # tool, may pay for that one call instead.
        self.cashier = cashier
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        # sha256(credential) -> Identity or a Refusal; never the credential itself. Each entry
        # keeps its account's credentials version, checked on every call (access/revocation.py).
        self._identities: TTLCache[str, Remembered] | None = (
            TTLCache(maxsize=10_000, ttl=settings.auth.tier_cache_s)
            if settings.auth.tier_cache_s
            else None
        )
        self._versions = revocation.CredentialVersions(settings)
        # Tokens from this server's OAuth authorization server name its /mcp URL (RFC 8707).
        resource = settings.site.mcp_resource_url
        self._audiences = (resource,) if resource else ()
        self.limiter = Limiter(settings.redis)
        self.meter = Meter(settings.meter.flush_s, last_write_within_s=settings.shutdown.close_s)
        self._paid_calls = (
            PaidCalls(settings, cashier, self.limiter, self._require_sessions, self._meter)
            if cashier is not None
            else None
        )

    @asynccontextmanager
    async def serving(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
        self._sessions = sessions
        if self.cashier is not None:
            await self.cashier.start()
        try:
            async with self.meter.running(sessions):
                yield
        finally:
            await self.limiter.close()
            await self._versions.close()
            if self.cashier is not None:
                await self.cashier.stop()

    async def check_credential(self, credential: str | None) -> Identity | Refusal | None:
        if credential is None and self.cashier is not None:
            return None  # no account: the free tier, or a payment for what it lacks
        return await self.identify(credential)

    async def admit(self, call: Call) -> Admission:
        offer = None
        # Quoted only when a payment may be due: subscribers' calls never build an offer.
        if call.credential is None and (quote := self._quote(call)) is not None:
            paying = call.payment is not None or call.bundle is not None
            if paying or not self._free_tier_answers(call):
                return await self._pay(call, None, quote)
            # The free tier never blocks: answered on it, saying what paying would add.
            offer = quote
        identity: Identity | Refusal
        if call.credential is None and self.cashier is not None and call.target.price is None:
            # What a wallet needs before it pays (prices, health, its usage) takes no account,
            # even where the free tier needs one.
            identity = Identity(Tier.FREE)
        else:
            identity = call.identity or await self.identify(call.credential)
        if isinstance(identity, Refusal):
            self._meter(call, None, identity.reason)
            return identity
        policy = TIERS[identity.tier]
        if not identity.tier.includes(call.target.tier):
            if (quote := self._quote(call)) is not None:
                return await self._pay(call, identity, quote)
            refusal = self._locked(call, identity.tier)
            self._meter(call, identity, refusal.reason)
            return refusal
        subject = identity.subject(call.peer)
        # A call that asks for its limits gets them from the same round trip that counts it.
        over, windows = await self.limiter.hit_reporting(subject, policy, report=call.limits_wanted)
        if over is not None and offer is not None and over.retry_after_s is not None:
            # Over the free tier's limit, the call may still be paid for: say both.
            assert self.cashier is not None  # there is an offer only when there is a cashier
            ask = f"{over.message.removesuffix(', or upgrade for a higher limit.')}; or pay: "
            over = replace(
                over, message=ask + self.cashier.ask(offer), payment_required=offer.required
            )
        if over is not None:
            self._meter(call, identity, over.reason)
            return over
        limits: tuple[LimitState, ...] = limit_states(windows) if windows else ()
        hide_after = policy.hide_after(dt.datetime.now(dt.UTC))
        return Grant(
            tier=identity.tier.value,
            max_results=min(policy.max_results, self._settings.answers.max_results),
            hide_after=hide_after,
            detailed_risk=policy.detailed_risk,
            account_pk=identity.account_pk,
            key_pk=identity.key_pk,
            subject=subject,
            limits=limits,
            offer=offer,
        )

    def _free_tier_answers(self, call: Call) -> bool:
        """Whether an anonymous, unpaid call is answered on the free tier rather than asked to
        pay: anonymous access is on and the free tier unlocks the tool, on every transport.
        With anonymous access off there is no free tier without an account, so a priced tool
        asks for payment."""
        return self._settings.auth.allow_anonymous and Tier.FREE.includes(call.target.tier)

    async def count_invalid(self, call: Call) -> Refusal | None:
        identity: Identity | Refusal
        if call.credential is None and self.cashier is not None:
            # A wallet without an account: it pays nothing for a call that cannot run, and is
            # counted by its address on the free tier's limits, as anonymous callers are.
            identity = Identity(Tier.FREE)
        else:
            identity = call.identity or await self.identify(call.credential)
        if isinstance(identity, Refusal):
            self._meter(call, None, identity.reason)
            return identity
        over = await self.limiter.hit(identity.subject(call.peer), TIERS[identity.tier])
        self._meter(call, identity, over.reason if over is not None else "invalid")
        if over is None:  # the operator's line (a refusal has the pipeline's); never the values
            log.info("%s refused: invalid arguments", call.target.name)
        return over

    async def complete(
        self,
        call: Call,
        grant: Grant,
        outcome: Outcome,
        results: int | None = None,
        answer: Mapping[str, Any] | None = None,
    ) -> Completed | Refusal:
        completed: Completed | Refusal = Completed()
        status: str = outcome
        receipt = None  # of the usage record: a call paid per call, once settled
        if self._paid_calls is not None and (grant.payment or grant.bundle):
            completed, receipt = await self._paid_calls.complete(grant, outcome, answer)
            if isinstance(completed, Refusal):  # its payment did not settle: withheld
                status, results = completed.reason.value, None
        self.meter.record(
            UsageEvent(
                at=dt.datetime.now(dt.UTC),
                account_pk=grant.account_pk,
                key_pk=grant.key_pk,
                tool=call.target.name,
                tier=grant.tier,
                status=status,
                duration_us=_elapsed_us(call),
                result_count=results,
                cost_units=1 if status == "ok" else 0,  # a failed call costs nothing
                receipt=receipt,
            )
        )
        return completed

    def _quote(self, call: Call) -> Quote | None:
        """What the call would cost paid on its own, or None when it cannot be paid for."""
        return self._paid_calls.quote(call) if self._paid_calls is not None else None

    async def _pay(self, call: Call, identity: Identity | None, quote: Quote) -> Admission:
        assert self._paid_calls is not None  # there is a quote only when calls can be paid
        admission = await self._paid_calls.admit(call, identity, quote)
        if isinstance(admission, Replayed) and admission.unmetered is not None:
            self._meter(call, identity, "ok", paid=admission.unmetered)
        return admission

    def _require_sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("the gate was used before it was given a database")
        return self._sessions

    async def limits_status(self) -> str:
        return await self.limiter.status()

    @property
    def takes_payments(self) -> bool:
        return self.cashier is not None

    @property
    def takes_transfers(self) -> bool:
        return self.cashier is not None and self.cashier.takes_transfers

    async def usage(self, grant: Grant, session: AsyncSession) -> UsageReport:
        windows = await self.limiter.usage(grant.subject, TIERS[Tier(grant.tier)])
        month = None
        if grant.account_pk is not None:
            async with self.meter.unwritten(grant.account_pk) as pending:
                month = await month_usage(session, grant.account_pk, pending)
        return UsageReport(
            tier=grant.tier,
            max_results=grant.max_results,
            minute=windows[0] if windows else None,
            day=windows[1] if windows else None,
            month=month,
        )

    async def identify(self, credential: str | None) -> Identity | Refusal:
        if credential is None:
            if self._settings.auth.allow_anonymous:
                return Identity(Tier.FREE)
            return Refusal(
                RefusalReason.UNAUTHENTICATED,
                "This server needs an API key or access token (Authorization: Bearer ...).",
            )
        if unstorable(credential) is not None:  # no key or token holds one: nothing to look up
            return Refusal(
                RefusalReason.UNAUTHENTICATED,
                "Malformed credential: no API key or access token holds such characters.",
            )
        digest = hashlib.sha256(credential.encode("utf-8", "replace")).hexdigest()
        known = self._identities.get(digest) if self._identities is not None else None
        if known is not None and (
            known.account_pk is None
            or not await self._versions.moved(
                self._require_sessions(), known.account_pk, known.version
            )
        ):
            return known.result
        found = await self._look_up(credential)
        if self._identities is not None:
            self._identities[digest] = found
        return found.result

    async def _look_up(self, credential: str) -> Remembered:
        # Read only: a pooled connection lost since its last use (a restart) is read again.
        return await read_retrying(
            self._require_sessions(), lambda session: self._look_up_in(session, credential)
        )

    async def _look_up_in(self, session: AsyncSession, credential: str) -> Remembered:
        key_pk = None
        if keys.looks_like_key(credential):
            found = await keys.account_for_key(session, credential)
            if found is None:
                return revocation.Remembered(
                    Refusal(RefusalReason.UNAUTHENTICATED, "Unknown or revoked API key.")
                )
            account, key_pk = found
        else:
            try:
                account = await tokens.verify_token(
                    session, self._settings.auth, credential, self._audiences
                )
            except tokens.TokenError as exc:
                return revocation.Remembered(
                    Refusal(RefusalReason.UNAUTHENTICATED, f"Access token refused: {exc}.")
                )
        # Read with the account, so never newer than the state below.
        version = account.credentials_version
        if not accounts.is_active(account):
            refusal = Refusal(RefusalReason.UNAUTHENTICATED, accounts.DISABLED_MESSAGE)
            # Remembered with its version, so enabling the account applies at once too.
            return revocation.Remembered(refusal, account.pk, version)
        grace = dt.timedelta(days=self._settings.stripe.past_due_grace_days)
        tier = await accounts.current_tier(session, account, grace)
        return revocation.Remembered(Identity(tier, account.pk, key_pk), account.pk, version)

    def _locked(self, call: Call, tier: Tier) -> Refusal:
        needed = call.target.tier
        where = f" at {self._settings.site.upgrade_url}" if self._settings.site.upgrade_url else ""
        return Refusal(
            RefusalReason.FORBIDDEN,
            f"{call.target.name} needs the {needed.value} tier or above; this caller is on "
            f"{tier.value}. Upgrade{where} to unlock it.",
            required_tier=needed,
            current_tier=tier,
        )

    def record_unavailable(self, call: Call) -> None:
        # Who called is unknown (identifying them is what failed): the anonymous chain.
        self._meter(call, None, RefusalReason.UNAVAILABLE)

    def _meter(
        self, call: Call, identity: Identity | None, status: str, *, paid: Receipt | None = None
    ) -> None:
        """Record a call that was not admitted (nothing ran, nothing is charged); or, ``paid``,
        the first answer of a payment whose settlement landed late (its call ran then)."""
        tier = identity.tier.value if identity else UNKNOWN_TIER
        self.meter.record(
            UsageEvent(
                at=dt.datetime.now(dt.UTC),
                account_pk=identity.account_pk if identity else None,
                key_pk=identity.key_pk if identity else None,
                tool=call.target.name,
                tier=PAID_TIER if paid else tier,
                status=status,
                duration_us=_elapsed_us(call),
                result_count=None,  # none refused; a stored answer's: the service layer's to count
                cost_units=1 if paid else 0,
                receipt=paid,
            ),
            admitted=False,
        )


def _elapsed_us(call: Call) -> int:
    return round((time.perf_counter() - call.started) * 1_000_000)

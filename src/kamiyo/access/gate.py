"""The gate: every call is admitted with a grant or refused, then completed.

The service pipeline builds a ``Call`` (what is asked for, by whom, paid how), asks ``admit``
and either runs the operation with the grant's scope or hands the refusal to the surface, which
renders it in its own wire format; after the work it calls ``complete`` (settle the payment,
meter). Only the gate decides; no operation checks tiers itself.

``OpenGate`` admits every call with the operator's result cap and records nothing (the command
line, a server without accounts, and tests of the operations themselves); ``AccountGate``
(account_gate.py) applies the tiers.
"""

import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import metrics
from kamiyo.access.meter import Receipt
from kamiyo.access.usage import UsageReport
from kamiyo.intel.scope import Scope
from kamiyo.payments.bundles import Balance, BundleAsk, BundleState
from kamiyo.payments.prices import Price
from kamiyo.tiers import Tier

if TYPE_CHECKING:  # x402 and the payment checks load only where payments are taken
    from x402.schemas import PaymentRequired, SettleResponse

    from kamiyo.payments.outcomes import Hold, Payment, Quote

# How a call that reached an operation ended: answered, failed, refused for its arguments
# (before it was admitted, or by the operation itself), or cut off because its database went
# away. With a refusal's reason, the status every usage record carries.
Outcome = Literal["ok", "error", "invalid", "unavailable"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a call asks for, as the gate sees it: a name (for limits, records and receipts),
    the lowest tier that unlocks it, and its price per call (None: never paid for)."""

    name: str
    tier: Tier = Tier.FREE
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class LimitState:
    """One rate limit as it stands after a call, for surfaces that report it (REST's IETF
    RateLimit headers): ``policy`` names it ("minute", "day")."""

    policy: str
    quota: int
    window_s: int
    remaining: int
    reset_s: int


# The peer of a call over stdio: the one local user who started the server.
LOCAL_PEER = "local"


@dataclass(frozen=True, slots=True)
class Call:
    target: Target
    credential: str | None = None
    # How many records the call asks for, where a price depends on it.
    size: int | None = None
    payment: "Payment | None" = None
    # Pay from a bundle of prepaid calls, or buy one (x402 on).
    bundle: BundleAsk | None = None
    # What x402 names the thing paid for: mcp://tool/<name>, or the REST URL.
    resource: str | None = None
    # Who is on the other end of the connection (client address on HTTP, "local" on stdio):
    # anonymous callers are limited per peer.
    peer: str = LOCAL_PEER
    started: float = field(default_factory=time.perf_counter)
    # Report where the caller's rate limits stand in the grant (a read of the limits store
    # more; the MCP tools do not ask).
    limits_wanted: bool = False
    # Who ``credential`` was found to be while serving this same request (HTTP's bearer guard
    # identifies it before any MCP message is read): the gate need not identify it again.
    identity: "Identity | None" = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a credential belongs to and the tier they hold now."""

    tier: Tier
    account_pk: int | None = None  # None: anonymous
    key_pk: int | None = None  # None: anonymous or a token

    def subject(self, peer: str) -> str:
        """The name limits are counted under: the account, or the peer for anonymous callers."""
        return f"account:{self.account_pk}" if self.account_pk is not None else f"peer:{peer}"


# Where an HTTP request's state (its ASGI scope's "state") keeps who its credential is, once
# the bearer guard has identified it: each identification reads the account's credentials
# version (a statement, or a Redis GET), which one request then pays once, not twice.
IDENTIFIED_STATE = "kamiyo.identified"


def remember_identity(
    state: MutableMapping[str, Any], credential: str | None, identity: Identity
) -> None:
    state[IDENTIFIED_STATE] = (credential, identity)


def identified(state: object, credential: str | None) -> Identity | None:
    """The identity the request's guard found for ``credential``; None when it found none
    (or for another credential, which the guard, refusing two Authorization headers, never
    lets through)."""
    found = state.get(IDENTIFIED_STATE) if isinstance(state, Mapping) else None
    if isinstance(found, tuple) and found[0] == credential and isinstance(found[1], Identity):
        return found[1]
    return None


# A grant's tier: a subscription tier, a call paid for on its own, or the open gate.
PAID_TIER = "x402"
OPEN_TIER = "open"


@dataclass(frozen=True, slots=True)
class Grant:
    """What an admitted call may see, and who it is for."""

    tier: str  # a Tier's value, PAID_TIER or OPEN_TIER
    max_results: int
    # Incidents dated after this are withheld (a delayed feed); None means real time.
    hide_after: dt.date | None = None
    # Risk answers carry recommendations (the enterprise tier).
    detailed_risk: bool = False
    # Who is calling, for metering: the account and key (None when anonymous), and the name
    # their limits and usage are kept under.
    account_pk: int | None = None
    key_pk: int | None = None
    subject: str = "open"
    # A verified x402 payment held for this call: settled by ``complete`` if the call succeeds.
    payment: "Hold | None" = None
    # The bundle this call's one call was taken from: given back by ``complete`` if it fails.
    bundle: Balance | None = None
    # The caller's rate limits after this call, when the call asked (``Call.limits_wanted``).
    limits: tuple[LimitState, ...] = ()
    # An anonymous call answered on the free tier that could have been paid for: what paying
    # would cost, so the answer can say what a payment (or a subscription) adds.
    offer: "Quote | None" = None

    @property
    def scope(self) -> Scope:
        return Scope(self.max_results, self.hide_after, self.detailed_risk)


class RefusalReason(StrEnum):
    UNAUTHENTICATED = "unauthenticated"  # no usable credential
    FORBIDDEN = "forbidden"  # the caller's tier does not unlock it
    RATE_LIMITED = "rate_limited"  # a per-minute or per-day limit
    UNAVAILABLE = "unavailable"  # the gate cannot decide now (its store is down)
    PAYMENT_REQUIRED = "payment_required"  # pay for this call (x402), or the payment failed


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call the gate turned away, in terms every surface can render."""

    reason: RefusalReason
    message: str  # one sentence an agent or a person can act on
    retry_after_s: int | None = None
    # A locked operation: the tier that unlocks it and the caller's.
    required_tier: Tier | None = None
    current_tier: Tier | None = None
    # A rate limit: which one (requests_per_minute, requests_per_day) and its value.
    limit: str | None = None
    limit_value: int | None = None
    # How to pay for this call (x402), when the reason is PAYMENT_REQUIRED.
    payment_required: "PaymentRequired | None" = None
    # A rate limit: where it stands (nothing remaining, reset when it frees up).
    limits: tuple[LimitState, ...] = ()

    def details(self) -> dict[str, Any]:
        """The machine-readable fields that are set, under their wire names."""
        fields = {
            "retry_after_seconds": self.retry_after_s,
            "required_tier": self.required_tier.value if self.required_tier else None,
            "current_tier": self.current_tier.value if self.current_tier else None,
            "limit": self.limit,
            "limit_value": self.limit_value,
        }
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Replayed:
    """This exact call was paid for and answered before (x402 payment-identifier): answer again."""

    answer: dict[str, Any]
    receipt: "SettleResponse | None"
    bundle: BundleState | None = None  # the bundle that payment bought, if it bought one
    # Set when this is the payment's first answer: its settlement landed after the call that
    # paid was refused as settlement_confirming, so the call is metered now, once, as paid.
    unmetered: Receipt | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """A call finished; ``receipt`` is its settled payment, if it was paid for, and
    ``bundle`` the bundle it bought or was paid from."""

    receipt: "SettleResponse | None" = None
    bundle: BundleState | None = None


Admission = Grant | Refusal | Replayed


class Gate(Protocol):
    def serving(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> AbstractAsyncContextManager[None]:
        """Run the gate on this database while the transport serves; on exit it flushes."""
        ...

    async def identify(self, credential: str | None) -> Identity | Refusal:
        """Who holds this credential (None: an anonymous caller), and their tier now."""
        ...

    async def check_credential(self, credential: str | None) -> Identity | Refusal | None:
        """Refuse a credential no call could use (HTTP answers 401 before any MCP message);
        else who holds it, for the request's calls (``Call.identity``), or None when nothing
        needed looking up."""
        ...

    async def admit(self, call: Call) -> Admission: ...

    async def count_invalid(self, call: Call) -> Refusal | None:
        """Count a call whose arguments were refused before it could be admitted: one request
        against the caller's limits, recorded as invalid; no payment is asked for or taken.

        A refusal wins over the arguments' error: a credential no call could use, or a limit
        reached. None: answer with the arguments' error.
        """
        ...

    async def complete(
        self,
        call: Call,
        grant: Grant,
        outcome: Outcome,
        results: int | None = None,
        answer: Mapping[str, Any] | None = None,
    ) -> Completed | Refusal:
        """Finish an admitted call, or refuse it when its answer must be withheld (its payment
        did not settle).

        ``results`` is how many records the answer holds, for metering; ``answer`` is the
        structured answer, kept with a payment so a retry of that payment gets it again.
        """
        ...

    async def usage(self, grant: Grant, session: AsyncSession) -> UsageReport:
        """The caller's limits and what they have used of them."""
        ...

    def record_unavailable(self, call: Call) -> None:
        """Meter a call refused because ``admit`` failed (its database unreachable): the
        refusal is kept and written with the rest once the database is back."""
        ...

    async def limits_status(self) -> str:
        """Where rate limits are kept and whether that store answers (for health checks)."""
        ...

    @property
    def takes_payments(self) -> bool:
        """Whether calls may be paid for one by one (x402)."""
        ...

    @property
    def takes_transfers(self) -> bool:
        """Whether a call may be paid by a plain Solana transfer named in its arguments."""
        ...


@dataclass(frozen=True, slots=True)
class OpenGate:
    max_results: int

    @asynccontextmanager
    async def serving(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
        yield

    async def identify(self, credential: str | None) -> Identity | Refusal:
        return Identity(Tier.ENTERPRISE)  # no accounts: everything is open

    async def check_credential(self, credential: str | None) -> Identity | Refusal | None:
        return None

    async def admit(self, call: Call) -> Admission:
        return Grant(tier=OPEN_TIER, max_results=self.max_results)

    async def count_invalid(self, call: Call) -> Refusal | None:
        _count(call, "invalid", admitted=False)
        return None

    async def complete(
        self,
        call: Call,
        grant: Grant,
        outcome: Outcome,
        results: int | None = None,
        answer: Mapping[str, Any] | None = None,
    ) -> Completed | Refusal:
        _count(call, outcome, admitted=True)
        return Completed()

    async def limits_status(self) -> str:
        return "none (open gate)"

    def record_unavailable(self, call: Call) -> None:
        return None  # the open gate records nothing

    async def usage(self, grant: Grant, session: AsyncSession) -> UsageReport:
        return UsageReport(
            tier=grant.tier, max_results=grant.max_results, minute=None, day=None, month=None
        )

    @property
    def takes_payments(self) -> bool:
        return False

    @property
    def takes_transfers(self) -> bool:
        return False


def _count(call: Call, status: str, *, admitted: bool) -> None:
    """The open gate keeps no usage records, but its calls are counted in /metrics as the
    metered ones are (under tier ``open``)."""
    seconds = time.perf_counter() - call.started
    metrics.count_call(call.target.name, OPEN_TIER, status, seconds, admitted=admitted)

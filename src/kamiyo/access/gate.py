"""The gate: every call is admitted with a grant or refused, then completed.

Surfaces (MCP tools, REST) build a ``Call``, ask ``admit`` and either run the intel function with
the grant's caps or hand the refusal back in their own wire format; after the work they call
``complete`` (settle payments, meter). Only the gate decides; no tool checks tiers itself.

``OpenGate`` admits every call with the operator's result cap and records nothing (a server
without accounts, and tests of the tools themselves); ``AccountGate`` (account_gate.py) applies
the tiers.
"""

import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.usage import UsageReport
from kamiyo.payments.outcomes import Hold

Outcome = Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class Call:
    tool: str
    credential: str | None = None
    # The tool's arguments (a price can depend on them) and an attached x402 payment, as sent.
    arguments: Mapping[str, Any] = field(default_factory=dict)
    payment: Any = None
    # What x402 names the thing paid for: mcp://tool/<name>, or the REST URL.
    resource: str | None = None
    # Who is on the other end of the connection (client address on HTTP, "local" on stdio):
    # anonymous callers are limited per peer.
    peer: str = "local"
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class Grant:
    """What an admitted call may see."""

    tier: str
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
    payment: Hold | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call the gate turned away, in terms every surface can render."""

    reason: str  # machine-readable: unauthenticated, forbidden, rate_limited, payment_required
    message: str  # one sentence an agent or a person can act on
    http_status: int
    details: Mapping[str, Any] = field(default_factory=dict)
    retry_after_s: int | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """This exact call was paid for and answered before (x402 payment-identifier): answer again."""

    answer: dict[str, Any]
    meta: Mapping[str, Any]


Admission = Grant | Refusal | Replayed


class Gate(Protocol):
    def serving(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> AbstractAsyncContextManager[None]:
        """Run the gate on this database while the transport serves; on exit it flushes."""
        ...

    async def check_credential(self, credential: str | None) -> Refusal | None:
        """Refuse a credential no call could use (HTTP answers 401 before any MCP message)."""
        ...

    async def admit(self, call: Call) -> Admission: ...

    async def complete(
        self,
        call: Call,
        grant: Grant,
        outcome: Outcome,
        results: int | None = None,
        answer: dict[str, Any] | None = None,
    ) -> Mapping[str, Any] | Refusal:
        """Finish an admitted call: metadata to attach to the result (e.g. a payment receipt),
        or a refusal when the answer must be withheld (its payment did not settle).

        ``results`` is how many records the answer holds, for metering; ``answer`` is the
        structured answer, kept with a payment so a retry of that payment gets it again.
        """
        ...

    async def usage(self, grant: Grant, session: AsyncSession) -> UsageReport:
        """The caller's limits and what they have used of them."""
        ...

    async def limits_status(self) -> str:
        """Where rate limits are kept and whether that store answers (for health checks)."""
        ...


@dataclass(frozen=True, slots=True)
class OpenGate:
    max_results: int

    @asynccontextmanager
    async def serving(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
        yield

    async def check_credential(self, credential: str | None) -> Refusal | None:
        return None

    async def admit(self, call: Call) -> Admission:
        return Grant(tier="open", max_results=self.max_results)

    async def complete(
        self,
        call: Call,
        grant: Grant,
        outcome: Outcome,
        results: int | None = None,
        answer: dict[str, Any] | None = None,
    ) -> Mapping[str, Any] | Refusal:
        return {}

    async def limits_status(self) -> str:
        return "none (open gate)"

    async def usage(self, grant: Grant, session: AsyncSession) -> UsageReport:
        return UsageReport(
            tier=grant.tier, max_results=grant.max_results, minute=None, day=None, month=None
        )

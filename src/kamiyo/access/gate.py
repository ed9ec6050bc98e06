"""The gate: every call is admitted with a grant or refused, then completed.

Surfaces (MCP tools, REST) build a ``Call``, ask ``admit`` and either run the intel function with
the grant's caps or hand the refusal back in their own wire format; after the work they call
``complete`` (settle payments, meter). Only the gate decides; no tool checks tiers itself.

``OpenGate`` admits every call with the operator's result cap and records nothing (a server
without accounts, and tests of the tools themselves); ``AccountGate`` (account_gate.py) applies
the tiers.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Outcome = Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class Call:
    tool: str
    credential: str | None = None
    # Request metadata that can carry a payment (``_meta`` on MCP, headers on HTTP).
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Grant:
    """What an admitted call may see."""

    tier: str
    max_results: int
    # Incidents dated after this are withheld (a delayed feed); None means real time.
    hide_after: dt.date | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call the gate turned away, in terms every surface can render."""

    reason: str  # machine-readable: unauthenticated, forbidden, rate_limited, payment_required
    message: str  # one sentence an agent or a person can act on
    http_status: int
    details: Mapping[str, Any] = field(default_factory=dict)
    retry_after_s: int | None = None


class Gate(Protocol):
    def bind(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Give the gate the database once the transport has opened it."""
        ...

    async def admit(self, call: Call) -> Grant | Refusal: ...

    async def complete(self, call: Call, grant: Grant, outcome: Outcome) -> Mapping[str, Any]:
        """Finish an admitted call; returns metadata to attach to the result (e.g. receipts)."""
        ...


@dataclass(frozen=True, slots=True)
class OpenGate:
    max_results: int

    def bind(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        pass

    async def admit(self, call: Call) -> Grant | Refusal:
        return Grant(tier="open", max_results=self.max_results)

    async def complete(self, call: Call, grant: Grant, outcome: Outcome) -> Mapping[str, Any]:
        return {}

"""The gate for subscriptions: who is calling, which tier they hold now, what it allows.

Identify (API key, else JWT, else anonymous on the free tier when allowed) -> tier from the
subscription state, remembered for ``tier_cache_s`` seconds so an upgrade or a cancellation
takes effect within seconds without a database read on every call -> the tool must be one the
tier unlocks -> a grant with the tier's caps. Rate limits, quotas and metering come next.
"""

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access import accounts, keys, tokens
from kamiyo.access.gate import Call, Grant, Outcome, Refusal
from kamiyo.config import Settings
from kamiyo.tiers import TIERS, Tier, lowest_tier_with

ANONYMOUS = "anonymous"


class AccountGate:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        # sha256(credential) -> (tier, who) or a Refusal; never the credential itself.
        self._identities: TTLCache[str, tuple[Tier, str] | Refusal] | None = (
            TTLCache(maxsize=10_000, ttl=settings.tier_cache_s) if settings.tier_cache_s else None
        )

    def bind(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def admit(self, call: Call) -> Grant | Refusal:
        identity = await self._identify(call.credential)
        if isinstance(identity, Refusal):
            return identity
        tier, _who = identity
        policy = TIERS[tier]
        if call.tool not in policy.tools and not call.tool.startswith("resource:"):
            return self._locked(call.tool, tier)
        hide_after = None
        if policy.data_delay_hours:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=policy.data_delay_hours)
            hide_after = cutoff.date() - dt.timedelta(days=1)  # incident dates are whole days
        return Grant(
            tier=tier.value,
            max_results=min(policy.max_results, self._settings.max_results),
            hide_after=hide_after,
        )

    async def complete(self, call: Call, grant: Grant, outcome: Outcome) -> Mapping[str, Any]:
        return {}

    async def _identify(self, credential: str | None) -> tuple[Tier, str] | Refusal:
        if credential is None:
            if self._settings.allow_anonymous:
                return Tier.FREE, ANONYMOUS
            return Refusal(
                "unauthenticated",
                "This server needs an API key or access token (Authorization: Bearer …).",
                401,
            )
        digest = hashlib.sha256(credential.encode("utf-8", "replace")).hexdigest()
        if self._identities is not None and (known := self._identities.get(digest)) is not None:
            return known
        identity = await self._look_up(credential)
        if self._identities is not None:
            self._identities[digest] = identity
        return identity

    async def _look_up(self, credential: str) -> tuple[Tier, str] | Refusal:
        if self._sessions is None:
            raise RuntimeError("the gate was used before it was bound to a database")
        async with self._sessions() as session:
            if keys.looks_like_key(credential):
                account = await keys.account_for_key(session, credential)
                if account is None:
                    return Refusal("unauthenticated", "Unknown or revoked API key.", 401)
            else:
                try:
                    account = await tokens.verify_token(session, self._settings, credential)
                except tokens.TokenError as exc:
                    return Refusal("unauthenticated", f"Access token refused: {exc}.", 401)
            return await accounts.current_tier(session, account), account.email

    def _locked(self, tool: str, tier: Tier) -> Refusal:
        needed = lowest_tier_with(tool)
        if needed is None:
            return Refusal("forbidden", f"{tool} is not available on any tier.", 403)
        where = f" at {self._settings.upgrade_url}" if self._settings.upgrade_url else ""
        return Refusal(
            "forbidden",
            f"{tool} needs the {needed.value} tier or above; this caller is on {tier.value}. "
            f"Upgrade{where} to unlock it.",
            403,
            details={"required_tier": needed.value, "current_tier": tier.value},
        )

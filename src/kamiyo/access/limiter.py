"""Requests per minute and per day, per account, in this process or shared through Redis.

The minute is a moving window (every call in the last 60 s counts, so there is no burst at a
window's edge); the day is a quota window that starts with its first call (one counter, so an
enterprise day of 100,000 calls costs one number, not 100,000 entries).

Shared across instances, the counts are in Redis: one Lua script checks and counts both windows
of a call in one round trip (it was one per window with the ``limits`` library's strategies), and
Redis runs a script alone, which makes the limits exact: with a limit of L exactly L of any
number of concurrent calls get through, and a call refused by one window counts in neither.
In one process the counting is ours (``LocalWindows``): ``limits``' in-memory storage hands an
expiry sweep to a thread on nearly every call, which measured ~290 µs per call; a deque of the
last L call times per subject costs a few µs, and with no await inside it is exact too.

With Redis each process still keeps its own minute window of the calls it admitted, and
refuses a call that would take it over the tier's limit whatever Redis says: a local ceiling.
It costs a few µs and changes nothing while Redis keeps its counts (this instance's calls are
among those Redis counted), but a Redis that restarts with empty memory, or comes back after
an outage, can no longer let one instance admit a second minute's worth within the minute.

When Redis cannot be reached the ``when_redis_down`` setting decides: ``open`` keeps limiting
with this process's own counters (the minute window above, and a day count of this process's
calls), ``closed`` refuses calls as temporarily unavailable. The outage is logged when it
starts, every ``REPORT_EVERY_S`` while it lasts and when it ends (``kamiyo.outages``).

The bound, per account and per minute: with Redis up, the tier's limit across all instances;
while Redis is away (fail-open), or in the minute after it restarts with empty memory, at most
the limit on each instance, so the limit times the number of instances in all (with a limit of
30 and two instances: 60, where before the local ceiling a restart let 90 through). Per day:
while Redis is away each instance allows the day's quota on its own count, and a Redis restarted
with empty memory starts the day's count again from zero.
"""

import logging
import math
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, cast

from kamiyo.access.gate import LimitState, Refusal, RefusalReason
from kamiyo.access.limit_scripts import HIT_SCRIPT, REFUSED_BY, USAGE_SCRIPT
from kamiyo.access.usage import Window
from kamiyo.config import RedisSettings
from kamiyo.outages import Outage
from kamiyo.tiers import CallLimits, TierPolicy

log = logging.getLogger(__name__)

MINUTE_S = 60.0
DAY_S = 86_400.0
MINUTE_MS, DAY_MS = int(MINUTE_S * 1000), int(DAY_S * 1000)  # the Redis scripts count in ms
# A call waits at most this long for Redis before the fallback applies. 0.5 s was too short: on
# a loaded 2-core machine connecting to a Redis that was up timed out, and two instances fell
# open (59 admitted of 30 in a minute). After a failure only one call a second waits this long.
REDIS_TIMEOUT_S = 2.0
REDIS_RETRY_S = 1.0  # after a failure, Redis is tried again this much later
PRUNE_EVERY = 4096  # calls between sweeps of idle subjects out of the local counters

Windows = tuple[Window, Window]  # the minute's, the day's
# What a subject is limited by: a tier's policy, or the limits of paid calls (tiers.py).
Limits = TierPolicy | CallLimits


def _window(limit: int, used: int, resets_in_s: float) -> Window:
    used = min(used, limit)
    return Window(
        limit=limit,
        used=used,
        remaining=limit - used,
        resets_in_seconds=max(0, math.ceil(resets_in_s)),
    )


class LocalWindows:
    """Counts for one process: the times of each subject's recent calls, and its day window."""

    def __init__(self) -> None:
        self._recent: dict[str, deque[float]] = {}
        self._days: dict[str, tuple[float, int]] = {}  # subject -> (window start, calls)
        self._hits = 0

    def hit(self, subject: str, policy: Limits) -> Refusal | None:
        taken = self.take(subject, policy)
        return taken if isinstance(taken, Refusal) else None

    def take(self, subject: str, policy: Limits, *, day: bool = True) -> float | Refusal:
        """Count a call unless it is over the minute's limit (and, with ``day``, the day's);
        the stamp ``give_back`` takes to uncount it."""
        now = time.monotonic()
        recent = self._recent_calls(subject, now)
        if len(recent) >= policy.requests_per_minute:
            return _over(
                "requests_per_minute", policy.requests_per_minute, recent[0] + MINUTE_S - now
            )
        start, calls = self._day(subject, now)
        if day and calls >= policy.requests_per_day:
            return _over("requests_per_day", policy.requests_per_day, start + DAY_S - now)
        recent.append(now)
        self._days[subject] = (start, calls + 1)
        self._hits += 1
        if self._hits % PRUNE_EVERY == 0:
            self._prune(now)
        return now

    def give_back(self, subject: str, stamp: float) -> None:
        """Uncount a call ``take`` counted (Redis refused it, or it is counted again)."""
        recent = self._recent.get(subject)
        if recent is not None and stamp in recent:
            recent.remove(stamp)
        start, calls = self._days.get(subject, (stamp, 0))
        if calls:
            self._days[subject] = (start, calls - 1)

    def usage(self, subject: str, policy: Limits) -> Windows:
        now = time.monotonic()
        recent = self._recent_calls(subject, now)
        start, calls = self._day(subject, now)
        minute_reset = recent[0] + MINUTE_S - now if recent else 0
        day_reset = start + DAY_S - now if calls else 0
        return (
            _window(policy.requests_per_minute, len(recent), minute_reset),
            _window(policy.requests_per_day, calls, day_reset),
        )

    def _recent_calls(self, subject: str, now: float) -> deque[float]:
        recent = self._recent.setdefault(subject, deque())
        while recent and recent[0] <= now - MINUTE_S:
            recent.popleft()
        return recent

    def _day(self, subject: str, now: float) -> tuple[float, int]:
        start, calls = self._days.get(subject, (now, 0))
        return (now, 0) if now >= start + DAY_S else (start, calls)

    def _prune(self, now: float) -> None:
        for subject in [
            s for s, recent in self._recent.items() if not recent or recent[-1] <= now - MINUTE_S
        ]:
            del self._recent[subject]
        for subject in [s for s, (start, _) in self._days.items() if now >= start + DAY_S]:
            del self._days[subject]


def _windows(policy: Limits, used: list[Any]) -> Windows:
    """USAGE_FUNCTION's answer as the windows."""
    recent, minute_ms, today, day_ms = (int(value) for value in used)
    return (
        _window(policy.requests_per_minute, recent, minute_ms / 1000),
        _window(policy.requests_per_day, today, day_ms / 1000),
    )


class RedisWindows:
    """The same windows in Redis: one script call per hit (EVALSHA; the script is loaded the
    first time Redis does not know it)."""

    def __init__(self, url: str, prefix: str) -> None:
        # Imported here: a process with no Redis configured (stdio, the CLI) never loads
        # redis-py and ``limits``' storage, about a tenth of a second of every start.
        import redis.asyncio
        from limits.aio.storage import RedisStorage
        from redis.exceptions import RedisError

        self.errors: tuple[type[Exception], ...] = (RedisError,)  # what "Redis is away" raises
        url = url.removeprefix("async+")
        # Our own pool, so that closing the limiter closes its connections.
        self.pool = redis.asyncio.ConnectionPool.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        self._prefix = f"{prefix}:limits"
        self._hit = self.client.register_script(HIT_SCRIPT)
        self._usage = self.client.register_script(USAGE_SCRIPT)
        # ``limits`` types its storage options as scalars; a pool is what redis-py takes.
        pooled: dict[str, Any] = {"connection_pool": self.pool}
        # The web endpoints' per-peer windows (web/request_limits.py) count through the
        # ``limits`` library, on the same pool and under the same prefix.
        self.storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            key_prefix=self._prefix,
            wrap_exceptions=True,
            **pooled,
        )

    def _keys(self, subject: str) -> list[str]:
        # The braces make both keys of a subject hash to one slot, as a script on a Redis
        # Cluster needs.
        return [f"{self._prefix}:{{{subject}}}:minute", f"{self._prefix}:{{{subject}}}:day"]

    async def hit(
        self, subject: str, policy: Limits, *, report: bool = False
    ) -> tuple[Refusal | None, Windows | None]:
        """Count a call unless it is over a window: the refusal, or with ``report`` the
        windows after it."""
        refused, retry_ms, *after = await self._hit(
            keys=self._keys(subject),
            args=[
                policy.requests_per_minute,
                policy.requests_per_day,
                MINUTE_MS,
                DAY_MS,
                int(report),
            ],
        )
        if refused:
            limit = REFUSED_BY[int(refused)]
            return _over(limit, getattr(policy, limit), int(retry_ms) / 1000), None
        return None, _windows(policy, after) if after else None

    async def usage(self, subject: str, policy: Limits) -> Windows:
        return _windows(policy, await self._usage(keys=self._keys(subject), args=[MINUTE_MS]))

    async def answers(self) -> bool:
        """Whether Redis answers a ping."""
        try:
            # redis-py types ping() for its sync and async clients alike.
            return await cast(Awaitable[bool], self.client.ping())
        except self.errors:
            return False


class Limiter:
    def __init__(self, redis: RedisSettings) -> None:
        self._fail_open = redis.when_down == "open"
        self._local = LocalWindows()
        self._shared = RedisWindows(redis.url, redis.prefix) if redis.url else None
        self._failed_at = -math.inf
        self._outage = Outage(
            "Redis for rate limits",
            consequence="limiting in this process" if self._fail_open else "refusing calls",
            counted="calls limited in this process" if self._fail_open else "calls refused",
            logger=log,
        )

    async def hit(self, subject: str, policy: Limits) -> Refusal | None:
        """Count one call for ``subject``; a refusal when it is over a limit."""
        return (await self.hit_reporting(subject, policy, report=False))[0]

    async def hit_reporting(
        self, subject: str, policy: Limits, *, report: bool
    ) -> tuple[Refusal | None, Windows | None]:
        """``hit``, and with ``report`` the windows after an admitted call (in the same
        round trip to Redis); None for them when they cannot be read."""
        if self._shared is None:
            over = self._local.hit(subject, policy)
            return over, self._local.usage(subject, policy) if report and over is None else None
        # The local ceiling first (no await between its check and its count): this instance's
        # own calls in the last minute, whatever Redis remembers.
        taken = self._local.take(subject, policy, day=False)
        if isinstance(taken, Refusal):
            self._outage.count()  # one more limited in this process, if Redis is away
            return taken, None
        if self._redis_resting():
            self._outage.count()
        else:
            try:
                over, windows = await self._shared.hit(subject, policy, report=report)
            except self._shared.errors as exc:
                self._redis_down(exc)
            else:
                self._outage.recovered()
                if over is not None:
                    self._local.give_back(subject, taken)
                return over, windows
        self._local.give_back(subject, taken)
        # Redis is away: this process's own counts decide, the day's too (fail-open).
        if not self._fail_open:
            return _unavailable(), None
        over = self._local.hit(subject, policy)
        return over, self._local.usage(subject, policy) if report and over is None else None

    async def usage(self, subject: str, policy: Limits) -> Windows | None:
        """The minute's and the day's windows for ``subject``; None when they cannot be read."""
        if self._shared is None:
            return self._local.usage(subject, policy)
        if not self._redis_resting():
            try:
                windows = await self._shared.usage(subject, policy)
            except self._shared.errors as exc:
                self._redis_down(exc)
            else:
                self._outage.recovered()
                return windows
        return self._local.usage(subject, policy) if self._fail_open else None

    async def status(self) -> str:
        """Where limits are counted and whether that store answers, for health checks."""
        if self._shared is None:
            return "in process"
        if await self._shared.answers():
            return "redis: ok"
        fallback = "limiting in this process" if self._fail_open else "refusing calls"
        return f"redis: unreachable ({fallback})"

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.pool.aclose()

    def _redis_resting(self) -> bool:
        # Redis failed a moment ago: do not make every call wait on it again.
        return time.monotonic() - self._failed_at < REDIS_RETRY_S

    def _redis_down(self, exc: Exception) -> None:
        self._failed_at = time.monotonic()
        self._outage.failed(exc)


def limit_states(windows: Windows) -> tuple[LimitState, LimitState]:
    """The minute's and the day's windows as the limits they are."""
    minute, day = windows
    return (
        LimitState(
            "minute", minute.limit, int(MINUTE_S), minute.remaining, minute.resets_in_seconds
        ),
        LimitState("day", day.limit, int(DAY_S), day.remaining, day.resets_in_seconds),
    )


def _over(limit: str, amount: int, retry_in_s: float) -> Refusal:
    retry = max(1, math.ceil(retry_in_s))
    per = "minute" if limit == "requests_per_minute" else "day"
    window = MINUTE_S if per == "minute" else DAY_S
    return Refusal(
        RefusalReason.RATE_LIMITED,
        f"Rate limit reached: {amount} requests per {per} on this tier. "
        f"Retry in {retry} s, or upgrade for a higher limit.",
        retry_after_s=retry,
        limit=limit,
        limit_value=amount,
        limits=(LimitState(per, amount, int(window), 0, retry),),
    )


def _unavailable() -> Refusal:
    return Refusal(
        RefusalReason.UNAVAILABLE,
        "Rate limiting is temporarily unavailable, so calls are paused; try again shortly.",
        retry_after_s=5,
    )


def over_payment_limit(over: Refusal, what: str, untouched: str) -> Refusal:
    """A limit on payments (tiers.py) said as one: what was limited, and that the payment
    was not ``untouched`` (verified, taken)."""
    if over.reason is not RefusalReason.RATE_LIMITED or over.retry_after_s is None:
        return over  # the limits' store is down: its own refusal says so
    per = "minute" if over.limit == "requests_per_minute" else "day"
    return replace(
        over,
        message=f"Too many {what}: at most {over.limit_value} a {per}. The payment was not "
        f"{untouched} and nothing was charged; retry in {over.retry_after_s} s.",
    )

"""Rate limits on unauthenticated web endpoints, per peer, with the ``limits`` library: the
dashboard's log-in (``dashboard/throttle.py``) and the OAuth endpoints (``oauth_limits.py``).

Shared across instances in Redis when ``KAMIYO_REDIS_URL`` is set (the storage the gate's
limiter uses, ``access.limiter.RedisWindows``, under its key prefix), else in this process.
While Redis cannot be reached the counts fall back to this process's own, so a Redis outage
neither opens the door wide nor locks everyone out.
"""

import logging
import math
import time

from limits import RateLimitItem
from limits.aio.strategies import MovingWindowRateLimiter as SharedWindow
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as LocalWindow

from kamiyo.access.limiter import RedisWindows
from kamiyo.config import RedisSettings

log = logging.getLogger(__name__)


class SharedWindows:
    """Moving windows counted in Redis when configured, else (or while it is down) here."""

    def __init__(self, redis: RedisSettings, purpose: str) -> None:
        self._purpose = purpose  # what the windows limit, for the log line of an outage
        self._local = LocalWindow(MemoryStorage())
        self._shared: SharedWindow | None = None
        self._redis: RedisWindows | None = None
        if redis.url:
            self._redis = RedisWindows(redis.url, redis.prefix)
            self._shared = SharedWindow(self._redis.storage)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.pool.aclose()

    async def wait(self, item: RateLimitItem, *subject: str) -> int | None:
        """Count one hit on ``subject``'s window; seconds to wait when over, else None."""
        if self._shared is not None:
            try:
                if await self._shared.hit(item, *subject):
                    return None
                reset = (await self._shared.get_window_stats(item, *subject)).reset_time
                return _seconds_until(reset)
            except StorageError as exc:
                log.warning(
                    "Redis for %s limits unreachable (%s): counting in this process",
                    self._purpose,
                    type(exc.storage_error).__name__,
                )
        if self._local.hit(item, *subject):
            return None
        return _seconds_until(self._local.get_window_stats(item, *subject).reset_time)


def _seconds_until(reset: float) -> int:
    return max(1, math.ceil(reset - time.time()))

"""Rate limits on log-in requests: per peer and per address, with the ``limits`` library.

Shared across instances in Redis when ``KAMIYO_REDIS_URL`` is set (the storage the gate's
limiter uses, ``access.limiter.RedisWindows``, under its key prefix), else in this process.
While Redis cannot be reached the counts fall back to this process's own, so a Redis outage
neither opens the door wide nor locks everyone out of logging in.
"""

import logging
import math
import time

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter as SharedWindow
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as LocalWindow

from kamiyo.access.limiter import RedisWindows
from kamiyo.config import RedisSettings

log = logging.getLogger(__name__)

LOGINS_PER_PEER = RateLimitItemPerMinute(10)
# Per address, across peers: a stranger cannot fill someone's inbox. Over it the answer is the
# same "check your email" and no mail goes out, so the limit tells nothing about the address.
LOGINS_PER_ADDRESS = RateLimitItemPerHour(5)


class LoginLimits:
    def __init__(self, redis: RedisSettings) -> None:
        self._local = LocalWindow(MemoryStorage())
        self._shared: SharedWindow | None = None
        self._redis: RedisWindows | None = None
        if redis.url:
            self._redis = RedisWindows(redis.url, redis.prefix)
            self._shared = SharedWindow(self._redis.storage)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.pool.aclose()

    async def peer_wait(self, peer: str) -> int | None:
        """Count a log-in request from ``peer``; seconds to wait when over, else None."""
        return await self._hit(LOGINS_PER_PEER, "dashboard-login-peer", peer)

    async def address_allowed(self, address: str) -> bool:
        """Count a log-in mail to ``address``; whether one may go out."""
        return await self._hit(LOGINS_PER_ADDRESS, "dashboard-login-address", address) is None

    async def _hit(self, item: RateLimitItem, *subject: str) -> int | None:
        if self._shared is not None:
            try:
                if await self._shared.hit(item, *subject):
                    return None
                reset = (await self._shared.get_window_stats(item, *subject)).reset_time
                return _seconds_until(reset)
            except StorageError as exc:
                log.warning(
                    "Redis for log-in limits unreachable (%s): counting in this process",
                    type(exc.storage_error).__name__,
                )
        if self._local.hit(item, *subject):
            return None
        return _seconds_until(self._local.get_window_stats(item, *subject).reset_time)


def _seconds_until(reset: float) -> int:
    return max(1, math.ceil(reset - time.time()))

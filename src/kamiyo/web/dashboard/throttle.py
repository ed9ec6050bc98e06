"""Rate limits on log-in requests: per peer and per address, in ``SharedWindows``
(``web/request_limits.py``: Redis when configured, else this process)."""

from limits import RateLimitItemPerHour, RateLimitItemPerMinute

from kamiyo.config import RedisSettings
from kamiyo.web.request_limits import SharedWindows

LOGINS_PER_PEER = RateLimitItemPerMinute(10)
# Per address, across peers: a stranger cannot fill someone's inbox. Over it the answer is the
# same "check your email" and no mail goes out, so the limit tells nothing about the address.
LOGINS_PER_ADDRESS = RateLimitItemPerHour(5)


class LoginLimits(SharedWindows):
    def __init__(self, redis: RedisSettings) -> None:
        super().__init__(redis, "log-in")

    async def peer_wait(self, peer: str) -> int | None:
        """Count a log-in request from ``peer``; seconds to wait when over, else None."""
        return await self.wait(LOGINS_PER_PEER, "dashboard-login-peer", peer)

    async def address_allowed(self, address: str) -> bool:
        """Count a log-in mail to ``address``; whether one may go out."""
        return await self.wait(LOGINS_PER_ADDRESS, "dashboard-login-address", address) is None

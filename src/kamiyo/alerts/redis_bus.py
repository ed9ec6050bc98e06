"""The change bus across instances: Redis pub/sub.

Whichever instance's worker claims a change publishes it once; every instance (itself
included) reads it from the channel and tells its own listeners. Pub/sub keeps nothing: an
instance cut off from Redis misses what is published meanwhile, which MCP notifications allow
(a client that reconnects re-reads). While Redis is away, a publication is told to this
instance's listeners directly, so its own sessions still hear.
"""

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio
from pydantic import ValidationError
from redis.exceptions import RedisError

from kamiyo.alerts.bus import Event, Listener, MemoryBus
from kamiyo.alerts.events import BUS_EVENT

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
RECONNECT_MAX_S = 30.0


class RedisBus:
    def __init__(self, url: str, prefix: str, local: MemoryBus | None = None) -> None:
        self.channel = f"{prefix}:alerts:changes"
        self._client = redis.asyncio.Redis.from_url(
            url.removeprefix("async+"), socket_connect_timeout=TIMEOUT_S
        )
        # Where what arrives is told: this instance's listeners.
        self._local = local or MemoryBus()
        self.connected = asyncio.Event()  # set while the reader is subscribed

    async def publish(self, event: Event) -> None:
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await self._client.publish(self.channel, event.model_dump_json())
        except (RedisError, OSError, TimeoutError) as exc:
            log.error(
                "Redis unreachable (%s): an %s event is told to this instance's sessions only",
                type(exc).__name__,
                event.type,
            )
            self._local.deliver(event)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._local.subscribe(listener)

    async def read(self) -> None:
        """Tell local listeners what arrives on the channel, reconnecting when Redis goes."""
        pause = 1.0
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.connected.set()
                    pause = 1.0
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(message["data"])
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.error(
                    "Redis change bus disconnected (%s); reconnecting in %.0f s",
                    type(exc).__name__,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_MAX_S)

    def _deliver(self, data: bytes) -> None:
        try:
            event = BUS_EVENT.validate_json(data)
        except ValidationError:
            log.error("the change bus carried a message this version cannot read; ignored")
            return
        self._local.deliver(event)

    async def aclose(self) -> None:
        await self._client.aclose()

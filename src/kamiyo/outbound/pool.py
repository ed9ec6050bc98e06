"""A pool of equivalent endpoints for one outbound service: failover, rate limits, health.

Every client KAMIYO runs against the outside (Solana RPC, source feeds, block explorers, webhook
receivers) needs the same things: spread requests over the endpoints it has (round robin), keep
each endpoint under its rate limit, step around a failing one for a cooldown and probe it before
using it again, back off between attempts, and bound a whole call by a deadline. This module
does that for any kind of request: a request is an async callable given one endpoint's client.

A request tells the pool whose fault a failure is. :class:`EndpointError` blames the endpoint
(connection refused, 5xx, a node that says it is unhealthy): the endpoint is marked down and the
call fails over to another. Any other exception is the request's own fault (bad parameters,
unknown method): the endpoint answered, so it stays up, and the exception reaches the caller
without trying elsewhere, since another endpoint would say the same.

Labels name endpoints in logs, errors and metrics; they never carry secrets (see ``http.py``).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

BACKOFF_S = 0.1
BACKOFF_CAP_S = 1.0


async def pause(seconds: float) -> None:
    """Backoff and rate-limit waits (one name, so tests can see what was waited for)."""
    await asyncio.sleep(seconds)


def clock() -> float:
    """The time slots and cooldowns are reckoned in (one name, so tests can hold it still)."""
    return time.monotonic()


def check_limits(
    *, requests_per_second: float, timeout_s: float, attempts: int, cooldown_s: float
) -> None:
    """ValueError for limits a pool cannot work with (callers check before opening clients)."""
    if min(requests_per_second, timeout_s, attempts) <= 0 or cooldown_s < 0:
        raise ValueError("rates, timeouts and attempts must be positive, delays not negative")


class SupportsAclose(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=SupportsAclose)
T = TypeVar("T")


class EndpointError(Exception):
    """An attempt failed because of the endpoint; ``reason`` never contains its URL or secrets."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PoolUnavailableError(Exception):
    """Every attempt failed on the endpoints' side."""


class PoolTimeoutError(Exception):
    """The call's deadline passed (retries and rate-limit waits included)."""


@dataclass(eq=False)
class _Endpoint(Generic[C]):
    label: str
    client: C
    next_slot: float = 0.0  # monotonic time of the next request the rate limit allows
    down_until: float | None = None  # None while healthy


class EndpointPool(Generic[C]):
    """Round robin over the healthy endpoints of one service, with failover.

    ``endpoints`` pairs each endpoint's label with its client (the pool closes the clients).
    ``timeout_s`` bounds a whole call; ``attempts`` counts tries across endpoints, with backoff
    between them. Requests to one endpoint are spaced ``1 / requests_per_second`` apart. A
    failing endpoint is skipped for ``cooldown_s``, then ``probe`` (if given) is run against it
    in the background: success (or any answer that is not an :class:`EndpointError`) brings it
    back. Without a probe, the endpoint is simply tried again after its cooldown. When every
    endpoint is down the pool still tries them, longest-cooled first, rather than refuse
    outright. ``service`` names the kind of endpoint in messages ("Solana RPC").
    """

    def __init__(
        self,
        endpoints: Sequence[tuple[str, C]],
        *,
        service: str,
        requests_per_second: float = 20.0,
        timeout_s: float = 5.0,
        attempts: int = 4,
        cooldown_s: float = 5.0,
        probe: Callable[[C], Awaitable[object]] | None = None,
        on_failure: Callable[[str], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        check_limits(
            requests_per_second=requests_per_second,
            timeout_s=timeout_s,
            attempts=attempts,
            cooldown_s=cooldown_s,
        )
        labels = [label for label, _ in endpoints]
        if len(set(labels)) != len(labels):
            raise ValueError("endpoint labels must be distinct")
        self.service = service
        self.timeout_s = timeout_s
        self._spacing_s = 1.0 / requests_per_second
        self._attempts = attempts
        self._cooldown_s = cooldown_s
        self._probe_request = probe
        self._on_failure = on_failure
        self._log = logger or logging.getLogger(__name__)
        self._endpoints = [_Endpoint(label, client) for label, client in endpoints]
        self._turn = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints' labels, as used in logs, errors and metrics."""
        return tuple(e.label for e in self._endpoints)

    async def run(self, request: Callable[[C], Awaitable[T]], *, what: str) -> T:
        """``request`` on some healthy endpoint, failing over; ``what`` names it in errors."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._run(request, what)
        except TimeoutError:
            raise PoolTimeoutError(f"{what} took longer than {self.timeout_s:g} s") from None

    async def check_health(self) -> dict[str, bool]:
        """Probe the down endpoints whose cooldown has passed; every endpoint's state by label."""
        await asyncio.gather(*(self._probe(e) for e in self._take_due()))
        return {e.label: e.down_until is None for e in self._endpoints}

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the background until it ends or the pool closes."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(e.client.aclose() for e in self._endpoints))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, request: Callable[[C], Awaitable[T]], what: str) -> T:
        tried: dict[str, None] = {}
        reason = ""
        for attempt in range(self._attempts):
            if attempt:
                await pause(min(BACKOFF_S * 2 ** (attempt - 1), BACKOFF_CAP_S))
            endpoint = self._pick()
            try:
                result = await self._attempt(endpoint, request)
            except EndpointError as failure:
                self._mark_down(endpoint, failure.reason)
                tried[endpoint.label] = None
                reason = failure.reason
                continue
            except Exception:
                self._mark_up(endpoint)  # it answered: the fault is the request's
                raise
            self._mark_up(endpoint)
            return result
        raise PoolUnavailableError(
            f"{what} failed on every {self.service} endpoint tried ({', '.join(tried)}); "
            f"last error: {reason}"
        )

    def _pick(self) -> _Endpoint[C]:
        """Round robin over healthy endpoints; probes ones due a retry in the background."""
        for endpoint in self._take_due():
            self.spawn(self._probe(endpoint))
        now = clock()
        # Without a probe, an endpoint past its cooldown is tried again by a real request.
        healthy = [
            e
            for e in self._endpoints
            if e.down_until is None or (self._probe_request is None and e.down_until <= now)
        ]
        if not healthy:
            return min(self._endpoints, key=lambda e: e.down_until or 0.0)
        self._turn += 1
        return healthy[(self._turn - 1) % len(healthy)]

    async def _attempt(self, endpoint: _Endpoint[C], request: Callable[[C], Awaitable[T]]) -> T:
        # Rate limit as minimum spacing: reserve the next slot now, so concurrent callers queue.
        now = clock()
        slot = max(now, endpoint.next_slot)
        endpoint.next_slot = slot + self._spacing_s
        if slot > now:
            await pause(slot - now)
        return await request(endpoint.client)

    def _take_due(self) -> list[_Endpoint[C]]:
        """Down endpoints past their cooldown, pushed back one more so only one probe runs."""
        if self._probe_request is None:
            return []  # nothing to probe with: _pick lets real requests retry it
        now = clock()
        due = [e for e in self._endpoints if e.down_until is not None and e.down_until <= now]
        for endpoint in due:
            endpoint.down_until = now + self._cooldown_s
        return due

    async def _probe(self, endpoint: _Endpoint[C]) -> None:
        assert self._probe_request is not None  # only due endpoints are probed
        try:
            await self._attempt(endpoint, self._probe_request)
        except EndpointError as failure:
            self._mark_down(endpoint, failure.reason)
            return
        except Exception:  # noqa: S110 (any answer but an endpoint fault means it serves)
            pass
        self._mark_up(endpoint)

    def _mark_down(self, endpoint: _Endpoint[C], reason: str) -> None:
        if self._on_failure is not None:
            self._on_failure(endpoint.label)
        if endpoint.down_until is None:
            self._log.warning("%s endpoint %s is down (%s)", self.service, endpoint.label, reason)
        endpoint.down_until = clock() + self._cooldown_s

    def _mark_up(self, endpoint: _Endpoint[C]) -> None:
        if endpoint.down_until is not None:
            endpoint.down_until = None
            self._log.info("%s endpoint %s is back", self.service, endpoint.label)

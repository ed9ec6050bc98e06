"""``/readyz``: may this instance take traffic? (``/healthz`` only says the process lives.)

Four checks, each named in the answer: the database answers, Redis answers (when configured),
the schema is the one this version needs (or a newer one, during an upgrade), and the data is
fresh (the newest successful source refresh against ``KAMIYO_SOURCES_STALE_AFTER``). 200 when
none fails, 503 naming the ones that do; an app whose shutdown has begun answers 503 too.

A proxy or orchestrator polls this every few seconds on every instance: one evaluation is
shared by every request for ``CACHE_S`` and by concurrent ones, so polling costs the database
at most a few small queries per instance every ``CACHE_S``. The body names checks, revisions
and ages, never a URL, host or credential (an error is named by its type only).
"""

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio
from sqlalchemy import func, select, text
from starlette.requests import Request
from starlette.responses import JSONResponse

from kamiyo import __version__, metrics
from kamiyo.config import Settings
from kamiyo.db import migrate
from kamiyo.db.tables import SourceState
from kamiyo.runtime import Runtime

log = logging.getLogger(__name__)

CACHE_S = 2.0  # how long one evaluation answers every poll
CHECK_TIMEOUT_S = 2.0  # a dependency slower than this counts as down: a poll must not hang

OK, FAIL, SKIPPED = "ok", "fail", "skipped"


@dataclass
class Check:
    status: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    checks: dict[str, Check]
    stopping: bool = False

    @property
    def failing(self) -> list[str]:
        return [name for name, check in self.checks.items() if check.status == FAIL]

    @property
    def ready(self) -> bool:
        return not self.failing and not self.stopping

    def body(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not_ready",
            "version": __version__,
            "failing": self.failing + (["shutdown"] if self.stopping else []),
            "checks": {name: {"status": c.status, **c.detail} for name, c in self.checks.items()},
        }


async def _timed(check: Callable[[], Awaitable[Check]]) -> Check:
    """``check()``, or a failure named by the error's type (its text may hold a host)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            result = await check()
    except TimeoutError:
        return Check(FAIL, {"error": f"no answer within {CHECK_TIMEOUT_S:g} s"})
    except Exception as exc:  # report, do not raise: this is what load balancers poll
        return Check(FAIL, {"error": type(exc).__name__})
    result.detail["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _observe(dependency: str, check: Check) -> None:
    """A dependency check's round trip in the latency histogram, or a failure counted."""
    if check.status == OK:
        metrics.observe_dependency(dependency, check.detail["latency_ms"] / 1000)
    elif check.status == FAIL:
        metrics.observe_dependency(dependency, None)


class Readiness:
    """The ``/readyz`` endpoint of one instance; :meth:`aclose` closes its Redis client."""

    def __init__(self, settings: Settings, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self._stale_after = settings.sources.stale_after
        self._redis = (
            redis.asyncio.Redis.from_url(
                settings.redis.url,
                socket_connect_timeout=CHECK_TIMEOUT_S,
                socket_timeout=CHECK_TIMEOUT_S,
            )
            if settings.redis.url
            else None
        )
        self._stopping = False
        self._last: tuple[float, Verdict] | None = None
        self._lock = asyncio.Lock()

    def stopping(self) -> None:
        self._stopping = True

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def endpoint(self, request: Request) -> JSONResponse:
        verdict = await self.verdict()
        return JSONResponse(verdict.body(), 200 if verdict.ready else 503)

    async def verdict(self) -> Verdict:
        async with self._lock:  # concurrent polls wait for the one evaluation under way
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= CACHE_S:
                verdict = await self._evaluate()
                if verdict.failing and (self._last is None or not self._last[1].failing):
                    log.warning("not ready: %s", ", ".join(verdict.failing))
                self._last = (time.monotonic(), verdict)
            verdict = self._last[1]
        return Verdict(verdict.checks, stopping=self._stopping)

    async def _evaluate(self) -> Verdict:
        database, redis_check = await asyncio.gather(_timed(self._database), self._redis_check())
        checks = {"database": database, "redis": redis_check}
        for dependency in metrics.DEPENDENCIES:
            _observe(dependency, checks[dependency])
        if database.status == OK:
            checks["migrations"] = await _timed(self._migrations)
            checks["data_freshness"] = await _timed(self._freshness)
        else:
            unchecked = Check(SKIPPED, {"reason": "the database is unreachable"})
            checks["migrations"] = checks["data_freshness"] = unchecked
        return Verdict(checks)

    async def _database(self) -> Check:
        async with self._runtime().sessions() as session:
            await session.execute(text("SELECT 1"))
        return Check(OK)

    async def _redis_check(self) -> Check:
        if self._redis is None:
            return Check(SKIPPED, {"reason": "KAMIYO_REDIS_URL is not set"})
        client = self._redis

        async def ping() -> Check:
            # redis-py types ping() for its sync and async clients alike.
            await cast(Awaitable[bool], client.ping())
            return Check(OK)

        return await _timed(ping)

    async def _migrations(self) -> Check:
        current = await migrate.current_revision(self._runtime().engine)
        head = migrate.HEAD_REVISION
        detail: dict[str, Any] = {"current": current, "head": head}
        if current == head:
            return Check(OK, detail)
        # A newer schema is an upgrade under way (docs/deploy.md, Upgrades): migrations run
        # before the new instances start and add what old ones do not read, so this one keeps
        # serving until it is replaced. An older or missing schema lacks what this one needs.
        if current is not None and current.isdigit() and int(current) > int(head):
            detail["note"] = "the schema is newer than this instance: replace it with the new one"
            return Check(OK, detail)
        return Check(FAIL, detail)

    async def _freshness(self) -> Check:
        async with self._runtime().sessions() as session:
            newest = await session.scalar(select(func.max(SourceState.last_success_at)))
        age = (dt.datetime.now(dt.UTC) - newest).total_seconds() if newest else None
        detail: dict[str, Any] = {
            "last_refresh": newest.isoformat(timespec="seconds") if newest else None,
            "age_s": round(age) if age is not None else None,
            "stale_after_s": self._stale_after,
        }
        if self._stale_after is None:
            return Check(OK, detail)
        if age is None:
            detail["reason"] = "no source has refreshed yet (run `kamiyo ingest`)"
            return Check(FAIL, detail)
        return Check(OK if age <= self._stale_after else FAIL, detail)

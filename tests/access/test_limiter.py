"""Rate limits and quotas: exact counts, the refusal's retry time, Redis shared, Redis down and
Redis restarted with empty memory."""

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
import redis

from kamiyo.access.gate import Refusal
from kamiyo.access.limiter import REDIS_RETRY_S, Limiter
from kamiyo.config import RedisSettings
from kamiyo.tiers import TIERS, Tier, TierPolicy
from tests.private_services import private_redis

pytestmark = pytest.mark.anyio

PERSONAL = TIERS[Tier.PERSONAL]


def policy(per_minute: int, per_day: int) -> TierPolicy:
    return replace(PERSONAL, requests_per_minute=per_minute, requests_per_day=per_day)


@asynccontextmanager
async def limiter(**settings: object) -> AsyncIterator[Limiter]:
    made = Limiter(RedisSettings(_env_file=None, **settings))  # type: ignore[arg-type]
    try:
        yield made
    finally:
        await made.close()


async def admitted(limiter: Limiter, subject: str, tier: TierPolicy, calls: int) -> int:
    results = await asyncio.gather(*(limiter.hit(subject, tier) for _ in range(calls)))
    return sum(result is None for result in results)


async def test_the_31st_call_in_a_minute_on_personal_is_refused_with_a_retry_time() -> None:
    async with limiter() as memory:
        assert await admitted(memory, "account:1", PERSONAL, 30) == 30
        refusal = await memory.hit("account:1", PERSONAL)
        assert isinstance(refusal, Refusal)
        assert refusal.reason == "rate_limited"
        assert (refusal.limit, refusal.limit_value) == ("requests_per_minute", 30)
        assert refusal.retry_after_s is not None
        assert 1 <= refusal.retry_after_s <= 60
        assert f"Retry in {refusal.retry_after_s} s" in refusal.message
        # Limits are per subject: another account is untouched.
        assert await memory.hit("account:2", PERSONAL) is None


async def test_the_daily_quota_is_its_own_limit() -> None:
    tight = policy(per_minute=100, per_day=5)
    async with limiter() as memory:
        assert await admitted(memory, "account:1", tight, 8) == 5
        refusal = await memory.hit("account:1", tight)
        assert isinstance(refusal, Refusal)
        assert refusal.limit == "requests_per_day"
        assert "5 requests per day" in refusal.message
        assert refusal.retry_after_s is not None
        assert refusal.retry_after_s > 3600


async def test_usage_reports_what_is_used_and_left() -> None:
    async with limiter() as memory:
        await admitted(memory, "account:1", PERSONAL, 4)
        windows = await memory.usage("account:1", PERSONAL)
    assert windows is not None
    minute, day = windows
    assert (minute.limit, minute.used, minute.remaining) == (30, 4, 26)
    assert (day.limit, day.used, day.remaining) == (1000, 4, 996)
    assert 0 < minute.resets_in_seconds <= 60


async def test_redis_counts_exactly_under_concurrency(redis_settings: dict[str, str]) -> None:
    async with limiter(**redis_settings) as shared, limiter(**redis_settings) as other:
        assert await shared.status() == "redis: ok"
        # Two limiters (as two instances would) share the count: 30 of 70 get through.
        both = await asyncio.gather(
            admitted(shared, "account:7", PERSONAL, 35), admitted(other, "account:7", PERSONAL, 35)
        )
        assert sum(both) == 30
        windows = await other.usage("account:7", PERSONAL)
    assert windows is not None
    assert windows[0].remaining == 0


TWO_PROCESS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from kamiyo.access.limiter import Limiter
    from kamiyo.config import RedisSettings
    from kamiyo.tiers import TIERS, Tier

    async def main() -> None:
        limiter = Limiter(RedisSettings(_env_file=None, **json.loads(sys.argv[1])))
        sys.stdin.readline()  # both processes start hitting at the same moment
        results = await asyncio.gather(
            *(limiter.hit("account:42", TIERS[Tier.PERSONAL]) for _ in range(60))
        )
        await limiter.close()
        print(sum(r is None for r in results))

    asyncio.run(main())
    """
)


def test_two_processes_sharing_redis_admit_exactly_the_limit(
    redis_settings: dict[str, str],
) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_PROCESS_SCRIPT, json.dumps(redis_settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate("go\n", timeout=60)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert sum(int(out) for out in outputs) == PERSONAL.requests_per_minute  # 30 of 120


REDIS_DOWN = {"url": "redis://127.0.0.1:1/0", "prefix": "down"}


async def test_redis_down_fails_open_to_local_limits_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with limiter(**REDIS_DOWN) as fallback:
        assert await admitted(fallback, "account:1", PERSONAL, 40) == 30
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # logged once, not once per call
    assert "limiting in this process" in errors[0].getMessage()


async def test_redis_down_can_fail_closed(caplog: pytest.LogCaptureFixture) -> None:
    async with limiter(**REDIS_DOWN, when_down="closed") as closed:
        refusals = await asyncio.gather(*(closed.hit("account:1", PERSONAL) for _ in range(3)))
        assert await closed.usage("account:1", PERSONAL) is None
    for refusal in refusals:
        assert isinstance(refusal, Refusal)
        assert refusal.reason == "unavailable"
        assert "temporarily unavailable" in refusal.message
    assert "refusing calls" in caplog.text


async def test_status_for_health_checks(redis_settings: dict[str, str]) -> None:
    async with (
        limiter() as memory,
        limiter(**redis_settings) as shared,
        limiter(**REDIS_DOWN, when_down="closed") as down,
    ):
        assert await memory.status() == "in process"
        assert await shared.status() == "redis: ok"
        assert await down.status() == "redis: unreachable (refusing calls)"


async def test_a_redis_restart_with_empty_memory_admits_no_more_than_the_limit_per_instance(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe's 90 calls in a minute on a 30-per-minute tier with two instances (30 each
    while Redis was down, then 30 more once it came back empty) are 60 now: each instance
    keeps its own minute window whatever Redis remembers."""
    with private_redis(tmp_path) as redis_server:
        settings = {"url": redis_server.url, "prefix": "restart"}
        async with limiter(**settings) as first, limiter(**settings) as second:
            assert await admitted(first, "account:1", PERSONAL, 10) == 10  # through Redis
            redis_server.kill()
            during = await admitted(first, "account:1", PERSONAL, 40) + await admitted(
                second, "account:1", PERSONAL, 40
            )
            redis_server.start()  # back, and empty
            await asyncio.sleep(REDIS_RETRY_S)  # the limiters try Redis again after this
            after = await admitted(first, "account:1", PERSONAL, 40) + await admitted(
                second, "account:1", PERSONAL, 40
            )
            assert await first.status() == "redis: ok"
            assert await first.hit("account:2", PERSONAL) is None  # through Redis again
    assert during == 20 + 30  # fail-open: each instance's own count (the first had 10 already)
    assert after == 0  # before the local ceiling: 30 more
    assert 10 + during + after == 2 * PERSONAL.requests_per_minute
    logged = [r.getMessage() for r in caplog.records if r.name == "kamiyo.access.limiter"]
    assert len(logged) == 3  # one outage per instance, and the first one's end
    assert all(
        "unavailable (" in line and "limiting in this process" in line for line in logged[:2]
    )
    assert logged[2].startswith("Redis for rate limits back after ")
    assert re.search(r"; \d+ calls limited in this process in all$", logged[2])


async def test_one_instance_admits_the_limit_once_across_a_redis_restart(
    tmp_path: Path,
) -> None:
    """Redis restarting between two calls (no failure seen) forgets the minute; the instance
    does not."""
    with private_redis(tmp_path) as redis_server:
        async with limiter(url=redis_server.url, prefix="restart") as one:
            assert await admitted(one, "account:1", PERSONAL, 40) == 30
            redis_server.kill()
            redis_server.start()
            await asyncio.sleep(REDIS_RETRY_S)
            assert await admitted(one, "account:1", PERSONAL, 40) == 0  # before: 30 more
            # Another account is untouched, and Redis counts it as before.
            assert await admitted(one, "account:2", PERSONAL, 40) == 30


async def test_a_refusal_by_redis_gives_the_local_count_back(
    redis_settings: dict[str, str],
) -> None:
    """With two instances sharing Redis, one whose calls Redis refused keeps no local count
    of them: when the minute frees up it gets its share again."""
    async with limiter(**redis_settings) as busy, limiter(**redis_settings) as other:
        for _ in range(30):  # one at a time: concurrent first connections may time out here
            assert await other.hit("account:3", PERSONAL) is None
        for _ in range(30):
            refusal = await busy.hit("account:3", PERSONAL)  # refused by Redis
            assert isinstance(refusal, Refusal)
        windows = await busy.usage("account:3", PERSONAL)
        assert windows is not None
        assert windows[0].used == 30
        assert len(busy._local._recent["account:3"]) == 0


async def test_redis_refuses_over_the_day_and_counts_a_refused_call_in_neither(
    redis_settings: dict[str, str],
) -> None:
    tight = policy(per_minute=100, per_day=5)
    async with limiter(**redis_settings) as shared:
        assert await admitted(shared, "account:1", tight, 8) == 5
        refusal = await shared.hit("account:1", tight)
        assert isinstance(refusal, Refusal)
        assert refusal.limit == "requests_per_day"
        assert refusal.retry_after_s is not None
        assert 3600 < refusal.retry_after_s <= 86_400
        windows = await shared.usage("account:1", tight)
    assert windows is not None
    minute, day = windows
    assert (minute.used, minute.remaining) == (5, 95)  # the 4 refused calls are not in it
    assert (day.used, day.remaining) == (5, 0)
    assert 3600 < day.resets_in_seconds <= 86_400


async def test_redis_minute_refusal_says_when_to_retry(redis_settings: dict[str, str]) -> None:
    async with limiter(**redis_settings) as shared:
        assert await admitted(shared, "account:1", PERSONAL, 30) == 30
        # The local ceiling is not what refuses here: another instance's count is empty.
        async with limiter(**redis_settings) as other:
            refusal = await other.hit("account:1", PERSONAL)
            windows = await other.usage("account:1", PERSONAL)
    assert isinstance(refusal, Refusal)
    assert refusal.limit == "requests_per_minute"
    assert refusal.retry_after_s is not None
    assert 1 <= refusal.retry_after_s <= 60
    assert windows is not None
    minute, day = windows
    assert (minute.used, minute.remaining) == (30, 0)
    assert 0 < minute.resets_in_seconds <= 60
    assert (day.used, day.remaining) == (30, 970)


async def test_each_call_is_one_round_trip_to_redis(tmp_path: Path) -> None:
    """Both windows are checked and counted by one script call (the ``limits`` strategies
    took one per window), and a usage read is one more; keys live under the prefix."""
    with private_redis(tmp_path) as redis_server:
        async with limiter(url=redis_server.url, prefix="trips") as shared:
            # The first use of each script loads it.
            assert await shared.hit("account:1", PERSONAL) is None
            assert await shared.usage("account:2", PERSONAL) is not None
            client = redis.Redis.from_url(redis_server.url)
            try:
                client.config_resetstat()
                assert await admitted(shared, "account:1", PERSONAL, 20) == 20  # 21 so far
                assert await shared.usage("account:1", PERSONAL) is not None
                # A call that asks for its windows gets them from the round trip counting it.
                over, reported = await shared.hit_reporting("account:1", PERSONAL, report=True)
                # redis-py types its sync and async answers alike.
                stats = cast(dict[str, dict[str, int]], client.info("commandstats"))
                keys = sorted(key.decode() for key in client.scan_iter(match="trips:*"))
                minute_ttl = cast(int, client.pttl("trips:limits:{account:1}:minute"))
                day_ttl = cast(int, client.pttl("trips:limits:{account:1}:day"))
            finally:
                client.close()
    assert stats["cmdstat_evalsha"]["calls"] == 22
    assert over is None
    assert reported is not None
    assert [(w.used, w.remaining) for w in reported] == [(22, 8), (22, 978)]
    assert not {"cmdstat_eval", "cmdstat_script|load"} & stats.keys()
    assert keys == ["trips:limits:{account:1}:day", "trips:limits:{account:1}:minute"]
    assert 0 < minute_ttl <= 60_000
    assert 86_000_000 < day_ttl <= 86_400_000


@pytest.mark.parametrize("where", ["memory", "redis", "redis down"])
async def test_a_call_that_asks_for_its_windows_gets_them_after_its_own_count(
    where: str, redis_settings: dict[str, str]
) -> None:
    settings = {"memory": {}, "redis": redis_settings, "redis down": REDIS_DOWN}[where]
    async with limiter(**settings) as counting:
        assert await admitted(counting, "account:1", PERSONAL, 3) == 3
        over, windows = await counting.hit_reporting("account:1", PERSONAL, report=True)
        assert over is None
        assert windows is not None
        minute, day = windows
        assert (minute.used, minute.remaining, day.used, day.remaining) == (4, 26, 4, 996)
        assert 0 < minute.resets_in_seconds <= 60
        assert 86_000 < day.resets_in_seconds <= 86_400
        assert await admitted(counting, "account:1", PERSONAL, 26) == 26
        over, windows = await counting.hit_reporting("account:1", PERSONAL, report=True)
    assert isinstance(over, Refusal)
    assert over.limit == "requests_per_minute"
    assert windows is None

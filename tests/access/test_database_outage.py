"""A PostgreSQL outage, in process, on a cluster of the tests' own that they stop and start.

What is refused while the database is down is metered once it is back; the outage is logged
once, not once per call; the meter holds what it cannot write, within its bound; and each
write stamps the instance's row, which a clean stop closes.
"""

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import outages
from kamiyo.access import accounts, keys
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Call, OpenGate
from kamiyo.access.meter import ANONYMOUS_CHAIN, Meter, UsageEvent, verify_chain
from kamiyo.config import AuthSettings, DatabaseSettings, MeterSettings, Settings
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.usage import ServingInstance, UsageRecord
from kamiyo.runtime import Runtime
from kamiyo.service.answers import Answer, Failure, FailureKind
from kamiyo.service.catalogue import CATALOGUE, ToolName, target
from kamiyo.service.pipeline import Caller, execute, run_call
from kamiyo.service.state import Job, ServerState
from kamiyo.tiers import Tier
from tests.private_services import PrivatePostgres, private_postgres

# Each test with its own outage reporter (tests/conftest.py).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("database_outage")]

CALLS_DURING = 25
SEARCH = target("search_exploits")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        yield pg


@pytest.fixture
async def runtime(cluster: PrivatePostgres) -> AsyncIterator[Runtime]:
    url = cluster.create_database(f"outage_{uuid.uuid4().hex[:12]}")
    engine = create_engine(url)
    settings = Settings(
        database=DatabaseSettings(url=url),
        auth=AuthSettings(secret_key="o" * 48),
        meter=MeterSettings(flush_s=0.1),
        _env_file=None,
    )
    try:
        await migrate.upgrade(engine)
        yield Runtime(settings, engine, session_factory(engine))
    finally:
        if cluster.process is None:  # a test that failed during its outage
            cluster.start()
        await engine.dispose()


class Counted(BaseModel):
    incidents: int


async def count_incidents(job: Job) -> BaseModel:
    return Counted(incidents=await job.session.scalar(text("SELECT count(*) FROM incidents")))


async def _key(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions() as session:
        account = await accounts.create_account(session, "outage@example.com", Tier.TEAM)
        new = await keys.create_key(session, account, "test")
        await session.commit()
        return new.key


async def statuses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(UsageRecord.status, func.count()).group_by(UsageRecord.status)
        )
        return {status: int(calls) for status, calls in rows}


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]


async def until_written(meter: Meter) -> None:
    """Flush until the held events are written (the first tries may meet dead connections)."""
    for _ in range(600):
        await meter.flush()
        if not meter.pending(None):
            return
        await _pause()
    raise AssertionError("the meter never wrote its held events")


async def _pause() -> None:
    import anyio

    await anyio.sleep(0.1)  # polling for the database to take writes, not a fixed wait


async def test_calls_refused_during_an_outage_are_metered_once_it_is_back(
    runtime: Runtime,
    cluster: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
    database_outage: outages.Outage,
) -> None:
    key = await _key(runtime.sessions)
    gate = AccountGate(runtime.settings)
    state = ServerState(settings=runtime.settings, gate=gate, runtime=runtime)
    caplog.set_level(logging.INFO)
    async with gate.serving(runtime.sessions):
        assert isinstance(await run_call(state, Call(SEARCH, key), count_incidents), Answer)
        cluster.stop()
        answers = [
            await run_call(state, Call(SEARCH, key), count_incidents) for _ in range(CALLS_DURING)
        ]
        assert {(a.kind, a.message) for a in answers if isinstance(a, Failure)} == {
            (
                FailureKind.UNAVAILABLE,
                "search_exploits is temporarily unavailable; try again shortly.",
            )
        }
        # Not asserted here: what the meter holds (its own flush may have a batch in flight);
        # the table below, once the database is back, is the proof.
        assert database_outage.down
        await gate.meter.flush()  # a write tried during the outage (the timer may not have run)
        cluster.start()
        await until_written(gate.meter)
        assert not database_outage.down
    assert await statuses(runtime.sessions) == {"ok": 1, "unavailable": CALLS_DURING}
    async with runtime.sessions() as session:
        assert (await verify_chain(session, ANONYMOUS_CHAIN)).ok
    assert tracebacks(caplog) == []  # before: one per call
    started = [r for r in caplog.records if r.getMessage().startswith("database unavailable (")]
    assert len(started) == 1
    ended = [r.getMessage() for r in caplog.records if "database back after" in r.getMessage()]
    assert len(ended) == 1
    assert ended[0].endswith(f"; {CALLS_DURING} requests refused in all")
    assert "held while it could not write" in caplog.text


async def test_a_database_lost_mid_call_answers_unavailable_without_a_traceback(
    runtime: Runtime, cluster: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The gate admitted the call without the database (here the open gate; with Redis, a
    remembered identity), then the call's own query fails."""
    state = ServerState(settings=runtime.settings, gate=OpenGate(10), runtime=runtime)
    caplog.set_level(logging.INFO)
    assert isinstance(await run_call(state, Call(SEARCH), count_incidents), Answer)
    cluster.stop()
    try:
        answer = await run_call(state, Call(SEARCH), count_incidents)
    finally:
        cluster.start()
    assert isinstance(answer, Failure)
    assert answer.kind == FailureKind.UNAVAILABLE
    assert tracebacks(caplog) == []  # before: "search_exploits failed" with a traceback
    assert "database unavailable (" in caplog.text


async def test_after_a_restart_the_first_reads_are_answered_on_new_connections(
    runtime: Runtime, cluster: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Pooled connections are not pinged on checkout: those the restart cut fail on use, and a
    call that only reads is read again on a new connection instead of answering unavailable;
    so is the gate's look-up of a credential."""
    key = await _key(runtime.sessions)
    # Nothing remembered: every call looks its credential up.
    settings = runtime.settings.with_changes(auth={"tier_cache_s": 0})
    gate = AccountGate(settings)
    state = ServerState(settings=settings, gate=gate, runtime=runtime)
    caplog.set_level(logging.INFO)
    async with gate.serving(runtime.sessions):

        async def read() -> object:
            return await run_call(state, Call(SEARCH, key), count_incidents, read_only=True)

        # Several at once, so the pool holds several connections when the server goes away.
        assert all(isinstance(a, Answer) for a in await _together(read, 4))
        cluster.stop()
        cluster.start()
        answers = await _together(read, 4)
    assert all(isinstance(a, Answer) for a in answers), answers
    assert "reading again" in caplog.text
    assert tracebacks(caplog) == []


async def _together(read: Callable[[], Awaitable[object]], calls: int) -> list[object]:
    import anyio

    answers: list[object] = []

    async def one() -> None:
        answers.append(await read())

    async with anyio.create_task_group() as group:
        for _ in range(calls):
            group.start_soon(one)
    return answers


def _event(at: dt.datetime) -> UsageEvent:
    return UsageEvent(at, None, None, "search_exploits", "free", "ok", 10, 1, 1)


async def test_beyond_its_bound_the_meter_drops_the_oldest_and_counts_them(
    runtime: Runtime, cluster: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    meter = Meter(flush_interval_s=3600, max_pending=10)
    start = dt.datetime.now(dt.UTC)
    async with meter.running(runtime.sessions):
        cluster.stop()
        for second in range(25):
            meter.record(_event(start + dt.timedelta(seconds=second)))
        assert await meter.flush() == 0
        kept = meter.pending(None)
        assert [e.at for e in kept] == [start + dt.timedelta(seconds=s) for s in range(15, 25)]
        cluster.start()
        await until_written(meter)
    dropped = [r for r in caplog.records if "older events were dropped" in r.getMessage()]
    assert [r.getMessage() for r in dropped] == [
        "usage meter wrote 10 events held while it could not write; 15 older events were "
        "dropped beyond its bound of 10"
    ]
    assert len([r for r in caplog.records if "its bound: the oldest" in r.getMessage()]) == 1
    assert await statuses(runtime.sessions) == {"ok": 10}


async def test_each_write_stamps_the_instance_and_a_clean_stop_closes_it(
    runtime: Runtime,
) -> None:
    meter = Meter(flush_interval_s=3600)
    async with meter.running(runtime.sessions):
        async with runtime.sessions() as session:
            (row,) = (await session.scalars(select(ServingInstance))).all()
            registered = row.last_flush_at
            assert row.stopped_at is None
        meter.record(_event(dt.datetime.now(dt.UTC)))
        assert await meter.flush() == 1
        async with runtime.sessions() as session:
            flushed = await session.get(ServingInstance, row.id)
            assert flushed is not None
            assert flushed.last_flush_at > registered
    async with runtime.sessions() as session:
        stopped = await session.get(ServingInstance, row.id, populate_existing=True)
    assert stopped is not None
    assert stopped.stopped_at is not None
    assert stopped.stopped_at == stopped.last_flush_at


async def test_invalid_calls_during_an_outage_are_one_outage_too(
    runtime: Runtime,
    cluster: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
    database_outage: outages.Outage,
) -> None:
    """A call with bad arguments is still counted, which needs the caller's identity: with the
    database down it is refused as unavailable, as an admission is, without a traceback."""
    key = await _key(runtime.sessions)
    gate = AccountGate(runtime.settings)
    state = ServerState(settings=runtime.settings, gate=gate, runtime=runtime)
    invalid = Failure(FailureKind.INVALID_ARGUMENTS, "Invalid arguments for search_exploits: …")
    search = CATALOGUE[ToolName.SEARCH_EXPLOITS]
    caplog.set_level(logging.INFO)
    async with gate.serving(runtime.sessions):
        cluster.stop()
        try:
            answers = [
                await execute(state, search, invalid, Caller(credential=key)) for _ in range(5)
            ]
        finally:
            cluster.start()
        await until_written(gate.meter)
    assert {(a.kind, a.message) for a in answers if isinstance(a, Failure)} == {
        (FailureKind.UNAVAILABLE, "search_exploits is temporarily unavailable; try again shortly.")
    }
    assert await statuses(runtime.sessions) == {"unavailable": 5}
    assert tracebacks(caplog) == []
    assert len([r for r in caplog.records if "database unavailable (" in r.getMessage()]) == 1

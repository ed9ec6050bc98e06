"""The meter: every call the gate saw, written in batches off the hot path, in hash chains.

``record`` only appends to a queue; a background task writes what has gathered every
``meter_flush_s`` seconds in one transaction, and ``running`` writes the rest when the server
stops (uvicorn finishes answering in-flight requests before that, so after SIGTERM the records
match the calls answered). Each write also stamps this instance's row (access/instances.py), so
an instance that dies without stopping shows where records may be missing.

A failed write keeps its events for the next attempt: while the database is down, calls and
refusals are held in memory and written, in order, once it is back. The queue holds at most
``MAX_PENDING`` events (about 200 MB); beyond that the oldest are dropped, counted, and the count
logged. An outage is logged as one (``kamiyo.outages``), not once per failed write.

Each chain (an account, or all anonymous callers) is a sequence of records whose hash covers
the record and the previous hash. A paid call's record names its payment's row in the settlement
journal (``payments``), which holds the receipt's facts once; the hash covers those facts too, so
editing the journal's payer, network, amount or transaction breaks the chain as well. Writers
take the chain heads' rows first (a row lock on PostgreSQL, the database write lock on SQLite),
so instances sharing a database extend each chain one after another. ``verify_chain``
recomputes a chain and reports the first break; a chain whose oldest records were pruned
(access/retention.py) verifies from its latest signed checkpoint (access/usage_checkpoint.py).
"""

import asyncio
import datetime as dt
import hashlib
import itertools
import json
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo import closing, outages
from kamiyo.access.instances import Instance, mark_flushed
from kamiyo.access.usage_checkpoint import latest_checkpoint, problem_with
from kamiyo.db.engine import dialect_name
from kamiyo.db.payments import Payment
from kamiyo.db.tables import ApiKey
from kamiyo.db.usage import UsageChain, UsageRecord
from kamiyo.observability.request_context import current_request_id

log = logging.getLogger(__name__)

USAGE_TABLE = cast(Table, UsageRecord.__table__)
GENESIS = "0" * 64
ANONYMOUS_CHAIN = "anonymous"
MAX_PENDING = 1_000_000  # beyond this (a database down for long), the oldest events are dropped


def chain_of(account_pk: int | None) -> str:
    return f"account:{account_pk}" if account_pk is not None else ANONYMOUS_CHAIN


@dataclass(frozen=True, slots=True)
class Receipt:
    """A settled x402 payment as the settlement journal holds it (``payments`` row ``payment_pk``).

    A usage record stores only ``payment_pk``; the other facts are the journal's, read back
    through it, and covered by the record's hash.
    """

    payment_pk: int
    network: str  # CAIP-2
    payer: str | None
    amount: int  # atomic USDC
    transaction: str


@dataclass(frozen=True, slots=True)
class UsageEvent:
    at: dt.datetime
    account_pk: int | None
    key_pk: int | None
    tool: str
    tier: str
    status: str  # ok, error, rate_limited, forbidden, unauthenticated, unavailable, ...
    duration_us: int
    result_count: int | None
    cost_units: int
    receipt: Receipt | None = None  # the call was paid per call (x402) and the payment settled
    # The request the call came in (observability/request_context.py), to find its log lines;
    # taken where the event is made, inside the request. Not in the hash: see record_hash.
    request_id: str | None = field(default_factory=current_request_id)

    @property
    def chain(self) -> str:
        return chain_of(self.account_pk)


def record_hash(chain: str, seq: int, event: UsageEvent, prev_hash: str) -> str:
    """The hash a record carries: canonical JSON of its fields and the previous hash.

    The request id is left out on purpose: it says where to look in the logs, not what was
    called or charged, and the caller may choose it (``X-Request-ID``). Left out, records
    written before it existed verify as they did, and an operator may clear the ids (logs
    kept for less time than usage) without breaking a chain.
    """
    payload = [
        chain,
        seq,
        event.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        event.account_pk,
        event.key_pk,
        event.tool,
        event.tier,
        event.status,
        event.duration_us,
        event.result_count,
        event.cost_units,
    ]
    if event.receipt is not None:  # records without one hash as they always did
        paid = event.receipt
        payload.append([paid.payment_pk, paid.network, paid.payer, paid.amount, paid.transaction])
    payload.append(prev_hash)
    encoded = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(encoded).hexdigest()


class Meter:
    def __init__(
        self,
        flush_interval_s: float,
        max_pending: int = MAX_PENDING,
        last_write_within_s: float = math.inf,
    ) -> None:
        self._flush_interval_s = flush_interval_s
        self._last_write_within_s = last_write_within_s  # KAMIYO_SHUTDOWN_CLOSE_S (closing.py)
        self._max_pending = max_pending
        self._pending: deque[UsageEvent] = deque(maxlen=max_pending)
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._instance: Instance | None = None
        self._lock = asyncio.Lock()  # one flush at a time per process
        self._held = False  # a write failed: the events waiting now are held for the database
        self._dropped = 0  # events dropped beyond max_pending since the database was last written

    def record(self, event: UsageEvent, *, admitted: bool = True) -> None:
        """``admitted``: the call ran (False: refused, or its arguments were, at the gate)."""
        # Every surface's calls, refusals included, pass here: the one place they are counted.
        # Imported here: a process without a meter (the CLI) never loads prometheus_client.
        from kamiyo import metrics

        seconds = event.duration_us / 1e6
        metrics.count_call(event.tool, event.tier, event.status, seconds, admitted=admitted)
        if len(self._pending) == self._max_pending:
            self._drop(1)  # the queue's maxlen drops the oldest as this one comes in
        self._pending.append(event)

    def pending(self, account_pk: int | None) -> list[UsageEvent]:
        """Events recorded for this account and not written yet."""
        return [event for event in self._pending if event.account_pk == account_pk]

    @asynccontextmanager
    async def unwritten(self, account_pk: int | None) -> AsyncIterator[list[UsageEvent]]:
        """``pending``, held steady while the caller reads the written records: no batch is
        written meanwhile. A batch being written is in neither place until it commits, so a
        count of both taken outside this would miss it (and one taken just as it commits could
        see it twice)."""
        async with self._lock:
            yield self.pending(account_pk)

    @asynccontextmanager
    async def running(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
        """Write batches in the background while serving; write the rest on exit."""
        self._sessions = sessions
        self._instance = Instance.this_process(self._flush_interval_s)
        await self.flush()  # registers this instance
        stop = asyncio.Event()
        task = asyncio.create_task(self._flush_until(stop), name="kamiyo-meter")
        try:
            yield
        finally:
            # Let a write in progress finish (cancelling it would roll it back), then the rest.
            stop.set()
            await closing.within("the meter's last write", self._last_write_within_s, task)
            if self._pending or self._dropped:
                log.error(
                    "usage meter stopped with %d unwritten events (and %d dropped before)",
                    len(self._pending),
                    self._dropped,
                )

    async def flush(self, *, stopping: bool = False) -> int:
        """Write everything recorded so far; returns how many events were written.

        With nothing recorded it still stamps this instance's row (a heartbeat, which also
        notices a database outage, and its end, with no traffic). ``stopping``: the last write
        of a clean stop.
        """
        async with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            taken_at = dt.datetime.now(dt.UTC)
            try:
                await self._write(batch, taken_at, stopping)
            except Exception as exc:
                self._put_back(batch)
                if outages.is_unreachable(exc):
                    outages.DATABASE.failed(exc, counted=False)
                elif outages.is_busy(exc):  # another writer's lock: the next flush retries
                    log.warning("usage meter: the database was busy; %d events wait", len(batch))
                else:
                    log.exception("usage meter could not write %d events; will retry", len(batch))
                self._held = self._held or bool(batch)
                return 0
            except BaseException:  # cancelled mid-write: the transaction rolled back
                self._put_back(batch)
                raise
            outages.DATABASE.recovered()
            if self._held or self._dropped:
                log.warning(
                    "usage meter wrote %d events held while it could not write; %d older events "
                    "were dropped beyond its bound of %d",
                    len(batch),
                    self._dropped,
                    self._max_pending,
                )
                self._held, self._dropped = False, 0
            return len(batch)

    def _put_back(self, batch: list[UsageEvent]) -> None:
        """Events of a failed write go back first (they came first), the newest kept."""
        waiting = len(batch) + len(self._pending)
        self._pending = deque(itertools.chain(batch, self._pending), maxlen=self._max_pending)
        self._drop(waiting - len(self._pending))

    def _drop(self, count: int) -> None:
        if count <= 0:
            return
        if not self._dropped:
            log.error(
                "usage meter holds %d unwritten events, its bound: the oldest are dropped, and "
                "counted, until the database takes writes again",
                self._max_pending,
            )
        self._dropped += count

    async def _flush_until(self, stop: asyncio.Event) -> None:
        """Flush every interval, and once more when ``stop`` is set."""
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._flush_interval_s)
            await self.flush(stopping=stop.is_set())
            if stop.is_set():
                return

    async def _write(self, batch: list[UsageEvent], taken_at: dt.datetime, stopping: bool) -> None:
        if self._sessions is None or self._instance is None:
            raise RuntimeError("the meter was used before it was given a database")
        async with self._sessions() as session, session.begin():
            if batch:
                await _insert_records(session, batch)
            await mark_flushed(session, self._instance, taken_at, stopping=stopping)


async def _insert_records(session: AsyncSession, batch: list[UsageEvent]) -> None:
    """Append the batch to its chains and move their heads, in the caller's transaction."""
    chains = sorted({event.chain for event in batch})
    heads = await _lock_heads(session, chains)
    rows = []
    for event in batch:
        seq, prev_hash = heads[event.chain]
        digest = record_hash(event.chain, seq + 1, event, prev_hash)
        heads[event.chain] = (seq + 1, digest)
        rows.append(
            {
                "chain": event.chain,
                "seq": seq + 1,
                "at": event.at,
                "account_pk": event.account_pk,
                "key_pk": event.key_pk,
                "tool": event.tool,
                "tier": event.tier,
                "status": event.status,
                "duration_us": event.duration_us,
                "result_count": event.result_count,
                "cost_units": event.cost_units,
                "payment_pk": event.receipt.payment_pk if event.receipt else None,
                "request_id": event.request_id,
                "prev_hash": prev_hash,
                "hash": digest,
            }
        )
    # Core insert: the ORM's bulk path costs more per row and adds nothing here.
    await session.execute(insert(USAGE_TABLE), rows)
    await session.execute(  # ORM bulk update by primary key
        update(UsageChain),
        [{"chain": chain, "seq": seq, "hash": h} for chain, (seq, h) in heads.items()],
    )
    await _touch_keys(session, batch)


async def _lock_heads(session: AsyncSession, chains: list[str]) -> dict[str, tuple[int, str]]:
    """Create missing heads and lock them all for this transaction; sorted order avoids deadlock.

    The insert comes first on purpose: on SQLite a write statement takes the database's write
    lock at once, so two writers queue (busy_timeout) instead of both reading a head.
    """
    dialect_insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    await session.execute(
        dialect_insert(UsageChain)
        .values([{"chain": chain, "seq": 0, "hash": GENESIS} for chain in chains])
        .on_conflict_do_nothing(index_elements=["chain"])
    )
    rows = await session.execute(
        select(UsageChain.chain, UsageChain.seq, UsageChain.hash)
        .where(UsageChain.chain.in_(chains))
        .order_by(UsageChain.chain)
        .with_for_update()
    )
    return {chain: (seq, digest) for chain, seq, digest in rows}


async def _touch_keys(session: AsyncSession, batch: list[UsageEvent]) -> None:
    """Keys' last-used times, once per key per batch instead of a write on every call."""
    last_used: dict[int, dt.datetime] = {}
    for event in batch:
        if event.key_pk is not None and event.status == "ok":
            last_used[event.key_pk] = max(event.at, last_used.get(event.key_pk, event.at))
    if last_used:
        await session.execute(
            update(ApiKey), [{"pk": pk, "last_used_at": at} for pk, at in last_used.items()]
        )


@dataclass(frozen=True, slots=True)
class ChainCheck:
    chain: str
    records: int
    ok: bool
    problem: str | None = None


async def verify_chain(
    session: AsyncSession, chain: str, checkpoint_key: bytes | None = None
) -> ChainCheck:
    """Recompute every hash of ``chain`` in order and compare with its head.

    Where records were pruned, the chain starts after its latest checkpoint, whose signature
    ``checkpoint_key`` checks (``records`` counts the records read, not the pruned ones).
    """
    head = await session.get(UsageChain, chain)
    prev_hash, expected_seq, count = GENESIS, 1, 0
    checkpoint = await latest_checkpoint(session, chain)
    if checkpoint is not None:
        problem = problem_with(checkpoint, checkpoint_key)
        if problem is not None:
            return ChainCheck(chain, 0, False, problem)
        prev_hash, expected_seq = checkpoint.hash, checkpoint.seq + 1
    rows = await session.stream(
        select(UsageRecord, Payment.network, Payment.payer, Payment.amount, Payment.transaction)
        .outerjoin(Payment, Payment.pk == UsageRecord.payment_pk)
        .where(UsageRecord.chain == chain, UsageRecord.seq >= expected_seq)
        .order_by(UsageRecord.seq)
    )
    first_seq = expected_seq
    async for row, network, payer, amount, transaction in rows:
        count += 1
        if row.seq != expected_seq:
            return ChainCheck(chain, count, False, f"record {expected_seq} is missing")
        receipt = None
        if row.payment_pk is not None:
            if network is None:
                problem = f"record {row.seq} names payment {row.payment_pk}, not in the journal"
                return ChainCheck(chain, count, False, problem)
            receipt = Receipt(row.payment_pk, network, payer, amount, transaction or "")
        event = UsageEvent(
            at=row.at,
            account_pk=row.account_pk,
            key_pk=row.key_pk,
            tool=row.tool,
            tier=row.tier,
            status=row.status,
            duration_us=row.duration_us,
            result_count=row.result_count,
            cost_units=row.cost_units,
            receipt=receipt,
            request_id=row.request_id,
        )
        if row.prev_hash != prev_hash:
            return ChainCheck(chain, count, False, f"record {row.seq} does not follow its previous")
        if record_hash(chain, row.seq, event, prev_hash) != row.hash:
            return ChainCheck(chain, count, False, f"record {row.seq} was altered")
        prev_hash, expected_seq = row.hash, expected_seq + 1
    if head is None:
        if count:
            return ChainCheck(chain, count, False, "the chain has no head")
        return ChainCheck(chain, 0, True)
    if (head.seq, head.hash) != (first_seq - 1 + count, prev_hash):
        return ChainCheck(chain, count, False, "records after the last one found were removed")
    return ChainCheck(chain, count, True)

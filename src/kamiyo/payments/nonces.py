"""EVM nonces of one relayer account, shared by every instance that settles with its key.

Two instances that each ask the node for the pending nonce and add one locally (what x402's
signer does) send two transactions with the same nonce as soon as they settle at the same
moment: one is refused and its payment fails to settle. The coordinator hands each send a nonce
of its own, under a lease:

- ``reserve(pending)`` takes the chain's pending transaction count, which the caller has just
  read, and returns a nonce no other holder has: first a nonce given back or left behind, else
  the next one. Nonces below ``pending`` are spent on chain and forgotten; a count that moved
  past ours (a transaction sent by other means) is adopted.
- ``sent`` extends the lease while the transaction propagates; once the chain's pending count
  passes it, the lease is dropped.
- ``give_back`` returns a nonce whose transaction the node refused (never broadcast), so the
  next send takes it and the account does not wedge on a gap.
- ``spent`` forgets a nonce the node says is already used (then the caller reserves another).

Recovery after a crash: a lease that is neither sent nor given back expires after ``lease_s``
and its nonce is handed out again. Any nonce between the chain's pending count and our next one
that nobody holds (a transaction dropped from the mempool) is a gap and is handed out again too;
when nothing is held at all, the next nonce is the chain's pending count (a re-sync).

Counts arrive out of order: one read just before a transaction landed can be reserved with
after one read just after. So a count below the highest seen is taken as stale, not as a
dropped transaction, until that highest count is ``lease_s`` old; otherwise the nonce just
spent would look like a gap and be handed out again.

Where the state lives: Redis when configured (one Lua script per step, so every step is atomic
across instances; a lease is a key's expiry-scored set entry, which needs no clean-up job, and
nonces are hot, short-lived state that needs no migration), else this process's memory, which
is right for the single instance a SQLite-only deployment runs. The in-memory coordinator
follows the script step for step; both are tested against the same cases.
"""

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# How far past the chain's pending count gaps are looked for: far more than are ever in flight.
GAP_WINDOW = 256


class NonceCoordinationError(Exception):
    """No nonce could be reserved (the shared store is unreachable); nothing was sent."""


@dataclass(frozen=True, slots=True)
class Lease:
    nonce: int
    token: str  # whose lease it is: only the holder may mark it sent or give it back


class NonceCoordinator(Protocol):
    def reserve(self, pending: int) -> Lease: ...

    def sent(self, lease: Lease) -> None: ...

    def give_back(self, lease: Lease) -> None: ...

    def spent(self, lease: Lease) -> None: ...

    def close(self) -> None: ...


def _now_ms() -> int:
    return int(time.time() * 1000)  # wall clock: shared by instances, unlike monotonic time


def _token() -> str:
    return secrets.token_hex(8)


@dataclass
class _Account:
    next: int = -1
    floor: int = 0  # the highest pending count seen lately
    floor_at: int = 0
    leases: dict[int, tuple[int, str]] = field(default_factory=dict)  # nonce -> (until, holder)
    free: set[int] = field(default_factory=set)


class LocalNonces:
    """The coordinator for one instance: the same steps as the Redis script, under a lock."""

    def __init__(self, *, lease_s: float) -> None:
        self._lease_ms = int(lease_s * 1000)
        self._lock = threading.Lock()
        self._account = _Account()

    def reserve(self, pending: int) -> Lease:
        now = _now_ms()
        with self._lock:
            account = self._account
            if pending >= account.floor or now - account.floor_at > self._lease_ms:
                account.floor, account.floor_at = pending, now
            pending = account.floor
            account.next = max(account.next, pending)
            account.free = {n for n in account.free if n >= pending}
            for nonce, (until, _holder) in list(account.leases.items()):
                if nonce < pending or until <= now:
                    del account.leases[nonce]
                    if nonce >= pending:
                        account.free.add(nonce)
            if not account.leases:
                account.next, account.free = pending, set()
            for nonce in range(pending, min(account.next, pending + GAP_WINDOW)):
                if nonce not in account.leases:
                    account.free.add(nonce)
            if account.free:
                nonce = min(account.free)
                account.free.discard(nonce)
            else:
                nonce = account.next
                account.next += 1
            lease = Lease(nonce, _token())
            account.leases[nonce] = (now + self._lease_ms, lease.token)
            return lease

    def sent(self, lease: Lease) -> None:
        with self._lock:
            if self._holds(lease):
                self._account.leases[lease.nonce] = (_now_ms() + self._lease_ms, lease.token)

    def give_back(self, lease: Lease) -> None:
        with self._lock:
            if self._holds(lease):
                del self._account.leases[lease.nonce]
                self._account.free.add(lease.nonce)

    def spent(self, lease: Lease) -> None:
        with self._lock:
            if self._holds(lease):
                del self._account.leases[lease.nonce]

    def close(self) -> None:
        return None

    def _holds(self, lease: Lease) -> bool:
        held = self._account.leases.get(lease.nonce)
        return held is not None and held[1] == lease.token


# KEYS: account (next, floor, floor_at), leases (nonce -> until), holders (nonce -> token),
# free (nonce -> nonce)
# ARGV: pending, now_ms, lease_ms, token, gap_window
_RESERVE = """
local pending = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local floor = tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')
local floor_at = tonumber(redis.call('HGET', KEYS[1], 'floor_at') or '0')
if pending >= floor or now - floor_at > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'floor', pending, 'floor_at', now)
else
  pending = floor
end
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next') or '-1')
if nxt < pending then nxt = pending end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. pending)
local held = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #held, 2 do
  local nonce = tonumber(held[i])
  if nonce < pending or tonumber(held[i + 1]) <= now then
    redis.call('ZREM', KEYS[2], held[i])
    redis.call('HDEL', KEYS[3], held[i])
    if nonce >= pending then redis.call('ZADD', KEYS[4], nonce, held[i]) end
  end
end
if redis.call('ZCARD', KEYS[2]) == 0 then
  nxt = pending
  redis.call('DEL', KEYS[4])
end
local last = math.min(nxt, pending + tonumber(ARGV[5])) - 1
for nonce = pending, last do
  if not redis.call('ZSCORE', KEYS[2], tostring(nonce)) then
    redis.call('ZADD', KEYS[4], nonce, tostring(nonce))
  end
end
local nonce
local lowest = redis.call('ZRANGE', KEYS[4], 0, 0)
if #lowest > 0 then
  nonce = tonumber(lowest[1])
  redis.call('ZREM', KEYS[4], lowest[1])
else
  nonce = nxt
  nxt = nxt + 1
end
redis.call('HSET', KEYS[1], 'next', nxt)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), tostring(nonce))
redis.call('HSET', KEYS[3], tostring(nonce), ARGV[4])
return nonce
"""

# ARGV: nonce, token, action (sent | give_back | spent), now_ms, lease_ms
_SETTLE = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == 'sent' then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[5]), ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[3] == 'give_back' then redis.call('ZADD', KEYS[4], tonumber(ARGV[1]), ARGV[1]) end
return 1
"""


class RedisNonces:
    """The coordinator every instance shares, in Redis under ``prefix``.

    ``account`` names the relayer and network (``eip155:8453:0x…``); its keys share one hash
    tag so a Redis Cluster keeps them on one shard, as the scripts need.
    """

    def __init__(self, url: str, *, prefix: str, account: str, lease_s: float) -> None:
        # The limits library spells the scheme async+redis://; the address is the same.
        self._client = redis.Redis.from_url(
            url.removeprefix("async+"), socket_timeout=2.0, socket_connect_timeout=2.0
        )
        tag = f"{prefix}:evm-nonces:{{{account.lower()}}}"
        self._keys = [f"{tag}:account", f"{tag}:leases", f"{tag}:holders", f"{tag}:free"]
        self._lease_ms = int(lease_s * 1000)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)

    def reserve(self, pending: int) -> Lease:
        token = _token()
        args: list[str | int] = [pending, _now_ms(), self._lease_ms, token, GAP_WINDOW]
        try:
            nonce = self._reserve(keys=self._keys, args=args)
        except RedisError as exc:
            why = type(exc).__name__
            log.warning("EVM nonce reservation failed: Redis did not answer (%s)", why)
            raise NonceCoordinationError(
                "no EVM nonce could be reserved: the shared Redis did not answer; nothing was "
                "sent, the payment can be tried again"
            ) from None
        return Lease(int(nonce), token)

    def sent(self, lease: Lease) -> None:
        self._step(lease, "sent")

    def give_back(self, lease: Lease) -> None:
        self._step(lease, "give_back")

    def spent(self, lease: Lease) -> None:
        self._step(lease, "spent")

    def close(self) -> None:
        self._client.close()

    def _step(self, lease: Lease, action: str) -> None:
        args: list[str | int] = [lease.nonce, lease.token, action, _now_ms(), self._lease_ms]
        try:
            self._settle(keys=self._keys, args=args)
        except RedisError as exc:
            # The lease then simply expires: its nonce comes back after lease_s if it is unused.
            log.warning(
                "EVM nonce %s of nonce %d not recorded: Redis did not answer (%s)",
                action,
                lease.nonce,
                type(exc).__name__,
            )

"""The relayer's nonce coordinator: in this process, and in Redis shared by two instances.

Every case runs on both coordinators; "two instances" are two coordinators on one account
(for the in-process one, the same object, as one instance is the rule without Redis).
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from kamiyo.payments.nonces import (
    LocalNonces,
    NonceCoordinationError,
    NonceCoordinator,
    RedisNonces,
)

ACCOUNT = "eip155:31337:0x70997970C51812dc3A010C7d01b50e79d17dc79C8"
LEASE_S = 0.3

Pair = tuple[NonceCoordinator, NonceCoordinator]


@pytest.fixture(params=["memory", "redis"])
def pair(request: pytest.FixtureRequest) -> Callable[[float], Pair]:
    """Two instances' coordinators on one account, with leases of the given length."""

    def make(lease_s: float) -> Pair:
        if request.param == "memory":
            local = LocalNonces(lease_s=lease_s)
            return local, local
        redis_settings: dict[str, str] = request.getfixturevalue("redis_settings")

        def one() -> RedisNonces:
            url, prefix = redis_settings["url"], redis_settings["prefix"]
            coordinator = RedisNonces(url, prefix=prefix, account=ACCOUNT, lease_s=lease_s)
            request.addfinalizer(coordinator.close)
            return coordinator

        return one(), one()

    return make


@pytest.fixture
def instances(pair: Callable[[float], Pair]) -> Pair:
    return pair(LEASE_S)


def test_concurrent_reservations_on_two_instances_never_share_a_nonce(
    pair: Callable[[float], Pair],
) -> None:
    a, b = pair(60)  # no lease may expire while the test runs, however loaded the machine
    chain_pending = 7

    def take(which: int) -> int:
        return (a if which % 2 else b).reserve(chain_pending).nonce

    with ThreadPoolExecutor(max_workers=8) as pool:
        nonces = list(pool.map(take, range(60)))
    assert sorted(nonces) == list(range(7, 67))


def test_a_refused_send_gives_its_nonce_to_the_next_send(instances: Pair) -> None:
    a, b = instances
    first, second = a.reserve(0), b.reserve(0)
    a.give_back(first)  # the node refused it: it never went out
    b.sent(second)
    assert b.reserve(0).nonce == first.nonce
    assert a.reserve(0).nonce == 2


def test_a_crashed_holders_nonce_comes_back_after_its_lease(instances: Pair) -> None:
    a, b = instances
    lost = a.reserve(3)  # the instance dies before sending: neither sent nor given back
    held = b.reserve(3)
    b.sent(held)
    assert (lost.nonce, held.nonce) == (3, 4)
    assert b.reserve(3).nonce == 5  # still leased: not handed out twice
    time.sleep(LEASE_S + 0.1)
    # The chain still waits for 3 (4 and 5 sit behind it): 3 first, then the expired 4 and 5
    # (their transactions never arrived either, or the pending count would have passed them).
    assert [b.reserve(3).nonce for _ in range(3)] == [3, 4, 5]


def test_only_the_holder_settles_a_lease(instances: Pair) -> None:
    a, b = instances
    stale = a.reserve(0)
    time.sleep(LEASE_S + 0.1)
    taken = b.reserve(0)  # the expired nonce, now someone else's
    assert taken.nonce == stale.nonce
    a.give_back(stale)  # too late: must not free the new holder's nonce
    assert b.reserve(0).nonce == taken.nonce + 1


def test_the_chain_moving_ahead_is_adopted(instances: Pair) -> None:
    a, b = instances
    a.sent(a.reserve(10))
    # Someone sent from the relayer by other means: the chain's count is past ours.
    assert b.reserve(25).nonce == 25
    assert a.reserve(25).nonce == 26


def test_nonces_spent_on_chain_are_forgotten(instances: Pair) -> None:
    a, b = instances
    leases = [a.reserve(0) for _ in range(3)]
    a.give_back(leases[1])
    for lease in (leases[0], leases[2]):
        a.sent(lease)
    # The chain mined 0..2 meanwhile (1 by another sender): the freed 1 is not handed out.
    assert b.reserve(3).nonce == 3
    spent = b.reserve(3)
    b.spent(spent)  # "nonce too low": used meanwhile; not handed out again by this count
    assert b.reserve(5).nonce == 5


def test_an_idle_account_resyncs_to_the_chain(instances: Pair) -> None:
    a, b = instances
    for _ in range(5):
        a.sent(a.reserve(0))
    time.sleep(LEASE_S + 0.1)
    # Nothing in flight and the chain only saw 2 of the 5 (the rest were dropped): the next
    # send takes the chain's count, so no gap wedges the account.
    assert b.reserve(2).nonce == 2
    assert b.reserve(2).nonce == 3


def test_a_gap_below_live_leases_is_filled(instances: Pair) -> None:
    a, b = instances
    a.sent(a.reserve(0))
    a.sent(a.reserve(0))
    # The pending count passed 0 (it was in the pool), then fell back: 0 was dropped.
    assert b.reserve(1).nonce == 2
    # At once, a lower count is a stale read (taken before 0 landed): 0 is not handed out.
    assert b.reserve(0).nonce == 3
    time.sleep(LEASE_S + 0.1)
    # Still 0 a lease later: it was dropped. Nothing else is in flight: start again from 0.
    assert b.reserve(0).nonce == 0
    assert b.reserve(0).nonce == 1


def test_a_stale_count_does_not_hand_out_a_nonce_just_spent(instances: Pair) -> None:
    a, b = instances
    first = a.reserve(0)
    a.sent(first)
    # Another send read the count (1) after the first landed and reserved first; then a send
    # that read it before (0) reserves: 0 is spent on chain, it must not get it.
    assert b.reserve(1).nonce == 1
    assert a.reserve(0).nonce == 2


def test_unreachable_redis_refuses_to_reserve(caplog: pytest.LogCaptureFixture) -> None:
    coordinator = RedisNonces(
        "redis://127.0.0.1:1/0", prefix="kamiyo_test", account=ACCOUNT, lease_s=LEASE_S
    )
    with pytest.raises(NonceCoordinationError, match="nothing was sent"):
        coordinator.reserve(0)
    coordinator.close()
    assert any("Redis did not answer" in r.getMessage() for r in caplog.records)


def test_reservations_from_many_threads_are_distinct_and_dense() -> None:
    local = LocalNonces(lease_s=5)
    taken: list[int] = []
    lock = threading.Lock()

    def work(reserve: Callable[[int], int]) -> None:
        for _ in range(50):
            nonce = reserve(0)
            with lock:
                taken.append(nonce)

    threads = [
        threading.Thread(target=work, args=(lambda p: local.reserve(p).nonce,)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(200))

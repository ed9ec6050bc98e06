"""EVM settlement across instances on anvil: one relayer key, nonces shared through Redis.

Two instances are two cashiers, each with its own facilitator (its own Web3, RPC pool and
nonce coordinator), sharing one PostgreSQL journal and one Redis, as two servers would.
"""

import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.chains import AcceptedNetwork
from kamiyo.config import RedisSettings, X402Settings
from kamiyo.db import migrate
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.payments import Payment
from kamiyo.payments.cashier import Cashier
from kamiyo.payments.facilitators import LocalFacilitator
from kamiyo.payments.nonces import RedisNonces
from kamiyo.payments.outcomes import Hold, RawPayment, Settled
from kamiyo.payments.prices import Price
from tests.conftest import PostgresDatabases
from tests.payments.evm_chain import PAYER_USDC, EvmChain, rpc, sign_exact_payment

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

AMOUNT = 50_000  # $0.05
TOOL = "assess_protocol_risk"
SETTLEMENTS = 50
PAYERS = 10


def network_of(chain: EvmChain, pay_to: str, *rpc_urls: str) -> AcceptedNetwork:
    return AcceptedNetwork(
        network=chain.network,
        pay_to=pay_to,
        asset=chain.token,
        rpc_urls=list(rpc_urls or [chain.rpc_url]),
        eip712_name=chain.token_name,
        eip712_version=chain.token_version,
    )


def x402_settings(network: AcceptedNetwork, chain: EvmChain, **fields: Any) -> X402Settings:
    return X402Settings(
        networks=[network],
        evm_relayer_key=SecretStr(chain.relayer_key),
        evm_rpc_requests_per_second=1000,  # anvil has no plan limit; the pool's spacing is ours
        **fields,
    )


@asynccontextmanager
async def instance(x402: X402Settings, redis: RedisSettings | None) -> AsyncIterator[Cashier]:
    cashier = Cashier(x402, LocalFacilitator(x402, redis), secret_key=SecretStr("k" * 32))
    await cashier.start()
    try:
        yield cashier
    finally:
        await cashier.stop()


@pytest.fixture
async def journal_db(
    postgres_databases: PostgresDatabases,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """One PostgreSQL journal, as instances share it."""
    engine = create_engine(await postgres_databases.create())
    try:
        await migrate.upgrade(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


def relayer_nonce(chain: EvmChain, block: str = "latest") -> int:
    return int(rpc(chain.rpc_url, "eth_getTransactionCount", chain.relayer, block), 16)


async def pay(
    cashier: Cashier,
    chain: EvmChain,
    payer: LocalAccount,
    sessions: async_sessionmaker[AsyncSession],
) -> Settled:
    quote = cashier.quote(TOOL, Price(AMOUNT), None, f"mcp://tool/{TOOL}")
    payment = sign_exact_payment(chain, quote.required.accepts[0], payer)
    sent = payment.model_dump(mode="json", by_alias=True, exclude_none=True)
    hold = await cashier.accept(RawPayment(sent), quote, sessions)
    assert isinstance(hold, Hold), hold
    settled = await cashier.settle(hold, {"paid": True}, sessions)
    assert isinstance(settled, Settled), settled
    return settled


async def test_fifty_concurrent_settlements_on_two_instances_share_one_relayer(
    evm_chain: EvmChain,
    journal_db: async_sessionmaker[AsyncSession],
    redis_settings: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain = evm_chain
    payers = [chain.new_payer() for _ in range(PAYERS)]
    pay_to = chain.new_payer(0).address
    x402 = x402_settings(network_of(chain, pay_to), chain)
    redis = RedisSettings.model_validate(redis_settings)
    first_nonce = relayer_nonce(chain)
    receipts: list[Settled] = []

    async with instance(x402, redis) as a, instance(x402, redis) as b:

        async def one(i: int) -> None:
            cashier = a if i % 2 else b
            receipts.append(await pay(cashier, chain, payers[i % PAYERS], journal_db))

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for i in range(SETTLEMENTS):
                group.start_soon(one, i)
        elapsed = time.perf_counter() - started
    print(f"{SETTLEMENTS} settlements on two instances: {elapsed:.2f} s")

    # A collision would be retried with a new nonce and settle anyway: none may happen.
    assert not [r for r in caplog.records if "taken meanwhile" in r.getMessage()]
    async with journal_db() as session:
        rows = list((await session.execute(select(Payment))).scalars())
    hashes = [settled.receipt.transaction for settled in receipts]
    check_fifty(chain, hashes, first_nonce, rows, payers, pay_to)


def check_fifty(
    chain: EvmChain,
    hashes: list[str],
    first_nonce: int,
    rows: list[Payment],
    payers: list[LocalAccount],
    pay_to: str,
) -> None:
    """All settled once each: nonces distinct and dense, the journal and balances agree."""
    assert len(set(hashes)) == SETTLEMENTS
    transactions = [rpc(chain.rpc_url, "eth_getTransactionByHash", h) for h in hashes]
    nonces = sorted(int(tx["nonce"], 16) for tx in transactions)
    # No nonce used twice, none skipped, nothing sent that did not settle.
    assert nonces == list(range(first_nonce, first_nonce + SETTLEMENTS))
    assert relayer_nonce(chain) == first_nonce + SETTLEMENTS
    assert len(rows) == SETTLEMENTS
    assert {row.state for row in rows} == {"settled"}
    assert sorted(str(row.transaction) for row in rows) == sorted(hashes)
    per_payer = SETTLEMENTS // PAYERS * AMOUNT
    assert [chain.balance_of(p.address) for p in payers] == [PAYER_USDC - per_payer] * PAYERS
    assert chain.balance_of(pay_to) == SETTLEMENTS * AMOUNT


async def test_fifty_settlements_from_two_processes_share_one_relayer(
    evm_chain: EvmChain,
    postgres_databases: PostgresDatabases,
    redis_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    chain = evm_chain
    payers = [chain.new_payer() for _ in range(PAYERS)]
    pay_to = chain.new_payer(0).address
    network = network_of(chain, pay_to)
    key_file = tmp_path / "relayer.key"
    key_file.write_text(chain.relayer_key)
    key_file.chmod(0o600)
    x402: dict[str, Any] = {
        "networks": [network.model_dump(mode="json")],
        "evm_relayer_key_file": str(key_file),
        "evm_rpc_requests_per_second": 1000,
    }
    database_url = await postgres_databases.create()
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    sessions = session_factory(engine)
    quote_with = x402_settings(network, chain)
    quoting = Cashier(quote_with, LocalFacilitator(quote_with), secret_key=SecretStr("k" * 32))
    quote = quoting.quote(TOOL, Price(AMOUNT), None, f"mcp://tool/{TOOL}")
    await quoting.stop()
    signed = [
        sign_exact_payment(chain, quote.required.accepts[0], payers[i % PAYERS]).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        for i in range(SETTLEMENTS)
    ]
    first_nonce = relayer_nonce(chain)
    processes: list[anyio.abc.Process] = []
    logs: list[BinaryIO] = []
    try:
        for half in (signed[0::2], signed[1::2]):
            config = {
                "x402": x402,
                "redis": redis_settings,
                "database_url": database_url,
                "tool": TOOL,
                "amount": AMOUNT,
                "payments": half,
            }
            logs.append((tmp_path / f"instance-{len(processes)}.log").open("wb"))
            proc = await anyio.open_process(
                [sys.executable, "-m", "tests.payments.evm_instance"], cwd=ROOT, stderr=logs[-1]
            )
            processes.append(proc)
            assert proc.stdin is not None
            await proc.stdin.send(json.dumps(config).encode() + b"\n")
        lines = [BufferedByteReceiveStream(p.stdout) for p in processes if p.stdout]
        with anyio.fail_after(180):
            for line in lines:
                ready = await line.receive_until(b"\n", 1 << 16)
                assert ready == b"ready", (tmp_path / "instance-0.log").read_text()[-3000:]
            started = time.perf_counter()
            for proc in processes:
                assert proc.stdin is not None
                await proc.stdin.send(b"go\n")  # both settle at once from here
            outputs = [await line.receive_until(b"\n", 1 << 24) for line in lines]
            elapsed = time.perf_counter() - started
    finally:
        for proc in processes:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            await proc.aclose()
        for log in logs:
            log.close()
    print(f"{SETTLEMENTS} settlements from two processes: {elapsed:.2f} s")
    for log in logs:
        text = await anyio.Path(log.name).read_text()
        assert "taken meanwhile" not in text, "two instances used one nonce"
    results = [result for output in outputs for result in json.loads(output)]
    assert [r["settled"] for r in results] == [True] * SETTLEMENTS, results
    try:
        async with sessions() as session:
            rows = list((await session.execute(select(Payment))).scalars())
    finally:
        await engine.dispose()
    check_fifty(chain, [r["transaction"] for r in results], first_nonce, rows, payers, pay_to)


async def test_a_nonce_reserved_by_a_crashed_instance_does_not_wedge_the_relayer(
    evm_chain: EvmChain,
    journal_db: async_sessionmaker[AsyncSession],
    redis_settings: dict[str, str],
) -> None:
    chain = evm_chain
    payer = chain.new_payer()
    x402 = x402_settings(network_of(chain, chain.pay_to), chain, evm_nonce_lease_s=0.5)
    redis = RedisSettings.model_validate(redis_settings)
    # The crashed instance reserved the next nonce and died before sending it.
    crashed = RedisNonces(
        redis.url or "",
        prefix=redis.prefix,
        account=f"{chain.network}:{chain.relayer}",
        lease_s=0.5,
    )
    lost = crashed.reserve(relayer_nonce(chain, "pending"))
    crashed.close()

    async with instance(x402, redis) as survivor:
        settled: list[Settled] = []

        async def settle_one() -> None:
            settled.append(await pay(survivor, chain, payer, journal_db))

        async with anyio.create_task_group() as group:
            # Sent behind the gap: the chain holds it until the lost nonce is used.
            group.start_soon(settle_one)
            await anyio.sleep(1.0)  # the lost lease expires meanwhile
            group.start_soon(settle_one)  # takes the lost nonce: both are mined
    nonces = {
        int(rpc(chain.rpc_url, "eth_getTransactionByHash", s.receipt.transaction)["nonce"], 16)
        for s in settled
    }
    assert nonces == {lost.nonce, lost.nonce + 1}
    assert relayer_nonce(chain) == lost.nonce + 2
    assert chain.balance_of(payer.address) == PAYER_USDC - 2 * AMOUNT


async def test_a_send_made_outside_the_coordinator_is_adopted(
    evm_chain: EvmChain, journal_db: async_sessionmaker[AsyncSession]
) -> None:
    chain = evm_chain
    payer = chain.new_payer()
    x402 = x402_settings(network_of(chain, chain.pay_to), chain)
    async with instance(x402, None) as only:
        await pay(only, chain, payer, journal_db)
        before = relayer_nonce(chain)
        # An operator sends from the relayer by hand: the chain's count moves past ours.
        tx = {"from": chain.relayer, "to": payer.address, "value": hex(1)}
        rpc(chain.rpc_url, "eth_sendTransaction", tx)
        settled = await pay(only, chain, payer, journal_db)
    sent = rpc(chain.rpc_url, "eth_getTransactionByHash", settled.receipt.transaction)
    assert int(sent["nonce"], 16) == before + 1
    assert chain.balance_of(payer.address) == PAYER_USDC - 2 * AMOUNT

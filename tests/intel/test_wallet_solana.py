"""The wallet screen on Solana: real SOL and USDC transfers on the LiteSVM ledger of the payments
tests, the sender a labelled attacker of a test dataset (both backends)."""

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.explorers import open_explorers
from kamiyo.intel import AddressScreenQuery, Verdict, screen_wallet
from kamiyo.intel.models import AddressFact
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.store import Store
from kamiyo.intel.vocabulary import AddressRole
from tests.explorers.explorer_server import Options
from tests.payments.solana_chain import SOL, USDC, SolanaChain, running_solana_chain

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def chain() -> Iterator[SolanaChain]:
    with running_solana_chain() as running:
        yield running


async def _incident_with_attacker(session: AsyncSession, attacker: str) -> None:
    report = SourceReport(
        source="test",
        source_id="20240101_solanatest",
        url="https://example.org/solana-test",
        date=dt.date(2024, 1, 1),
        protocol="SolanaTest",
        chains=["solana"],
        loss_usd=1_000_000,
        loss_usd_basis="usd",
        attack_type_raw="Private key compromise",
        addresses=[AddressFact(role=AddressRole.ATTACKER, chain="solana", address=attacker)],
    )
    store = await Store.load(session)
    await store.ingest(session, [report], origin="live")
    await session.commit()


async def test_sol_and_usdc_from_a_listed_solana_attacker_are_flagged(
    chain: SolanaChain, migrated_sessions: async_sessionmaker[AsyncSession]
) -> None:
    run = uuid.uuid4().hex[:8]  # the ledger outlives one backend's run: new keys each time
    attacker = chain.new_wallet(usdc=50 * USDC, lamports=5 * SOL, label=f"screen-attacker-{run}")
    wallet = chain.new_wallet(usdc=1, label=f"screen-wallet-{run}")
    sol_tx = chain.send_sol(attacker, wallet.pubkey(), SOL // 4)
    usdc_tx = chain.transfer_with_memo(attacker, wallet.pubkey(), 7 * USDC, "proceeds")
    async with migrated_sessions() as session:
        await _incident_with_attacker(session, str(attacker.pubkey()))
        options = Options(solana_rpc_urls=[chain.rpc_url])
        async with open_explorers(options) as explorers:
            answer = await screen_wallet(
                session,
                AddressScreenQuery(wallet_address=str(wallet.pubkey())),
                reader=explorers,
                budget_s=10,
            )
    assert answer.verdict is Verdict.WARN
    assert answer.coverage.chains == ["solana"]
    found = {(c.tx_hash, c.token, c.amount, c.direction) for c in answer.counterparties}
    # LiteSVM's mint has no token metadata: the mint stands for its symbol.
    assert found == {(sol_tx, None, "0.25", "in"), (usdc_tx, str(chain.mint), "7", "in")}
    assert {c.incident_id for c in answer.counterparties} == {"20240101_solanatest"}

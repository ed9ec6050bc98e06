"""``kamiyo payments reconcile``: a payment charged on chain that nobody answered is reported.

The journal holds a pending settlement (as the cashier leaves one whose send got no answer);
its authorization is then used on anvil, by a transaction KAMIYO never heard back from.
"""

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner
from x402.schemas import PaymentPayload

from kamiyo.cli import app
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.payments import Payment
from kamiyo.payments.cashier import payment_key
from kamiyo.payments.outcomes import digest
from kamiyo.payments.settlements import as_json, identity_of
from tests.mcpserver.conftest import free_port
from tests.payments.evm_chain import (
    EvmChain,
    authorization_args,
    exact_requirements,
    sign_exact_payment,
    split_signature,
)
from tests.payments.test_evm_chain import TRANSFER_VRS
from tests.payments.test_evm_settlement import AMOUNT, TOOL, network_of
from tests.web.test_metrics import TOKEN, WAIT_S, exported, scrape, value, worker_process

runner = CliRunner()


async def _insert(url: str, row: Payment) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            session.add(row)
            await session.commit()
            return row.pk
    finally:
        await engine.dispose()


def _pending_payment(
    chain: EvmChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, PaymentPayload, dict[str, str]]:
    """A pending settlement in a fresh journal, as the cashier leaves one whose send got no
    answer: its row, its payment (not on chain yet), and the settings naming both."""
    env = {
        "KAMIYO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kamiyo.db'}",
        "KAMIYO_X402_NETWORKS": json.dumps(
            [network_of(chain, chain.new_payer(0).address).model_dump(mode="json")]
        ),
    }
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    payer = chain.new_payer()
    pay_to = json.loads(env["KAMIYO_X402_NETWORKS"])[0]["pay_to"]
    requirements = exact_requirements(chain, AMOUNT, pay_to=pay_to)
    payment = sign_exact_payment(chain, requirements, payer)
    identity = identity_of(payment, requirements, None)
    assert identity is not None
    now = dt.datetime.now(dt.UTC)
    row = Payment(
        payment_key=payment_key(payment),
        payload_hash=digest(payment.payload),
        tool=TOOL,
        network=chain.network,
        payer=payer.address,
        amount=AMOUNT,
        state="pending",
        reason="settlement_unknown",
        chain_identity=as_json(identity),
        answer={"paid": True},
        created_at=now,
        updated_at=now,
    )
    return asyncio.run(_insert(env["KAMIYO_DATABASE_URL"], row)), payment, env


def _land(chain: EvmChain, payment: PaymentPayload) -> None:
    """The authorization used on chain by a transaction KAMIYO never heard back from."""
    v, r, s = split_signature(payment.payload["signature"])
    chain.send(TRANSFER_VRS, *authorization_args(payment), v, r, s)


def test_reconcile_reports_a_payment_charged_but_never_answered(
    evm_chain: EvmChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk, payment, _ = _pending_payment(evm_chain, tmp_path, monkeypatch)
    # Not on chain yet: still pending, nothing reported as charged.
    still = runner.invoke(app, ["payments", "reconcile", "--json"])
    assert still.exit_code == 0, still.stderr
    assert [(s["pk"], s["why"]) for s in json.loads(still.stdout)["pending"]] == [
        (pk, "the authorization is not used yet and still valid")
    ]

    _land(evm_chain, payment)

    found = runner.invoke(app, ["payments", "reconcile", "--json"])
    assert found.exit_code == 0, found.stderr
    [charged] = json.loads(found.stdout)["landed_unanswered"]
    assert (charged["pk"], charged["amount"], charged["tool"]) == (pk, AMOUNT, TOOL)
    assert charged["payer"] == payment.payload["authorization"]["from"]
    assert charged["why"] == "landed"
    # Still unanswered on the next run, told in words; the chain is not asked again.
    again = runner.invoke(app, ["payments", "reconcile"])
    assert again.exit_code == 0, again.stderr
    assert f"charged, not answered: payment {pk} {AMOUNT} atomic USDC for {TOOL}" in again.stdout
    assert "1 settled on chain but not answered" in again.stderr


def test_reconcile_refuses_when_x402_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAMIYO_X402_NETWORKS", raising=False)
    result = runner.invoke(app, ["payments", "reconcile"])
    assert result.exit_code == 2
    assert "x402 is off" in result.stderr


def test_the_worker_reports_a_payment_charged_but_never_answered(
    evm_chain: EvmChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk, payment, env = _pending_payment(evm_chain, tmp_path, monkeypatch)
    _land(evm_chain, payment)
    port = free_port()
    env |= {"KAMIYO_METRICS_WORKER_PORT": str(port), "KAMIYO_METRICS_TOKEN": TOKEN}
    url = f"http://127.0.0.1:{port}"
    unanswered = 0.0
    with worker_process(tmp_path, env):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not unanswered:
            try:
                _, samples = exported(scrape(url).text)
            except httpx2.TransportError:  # not listening yet: polling for it
                samples = []
            unanswered = value(samples, "kamiyo_x402_unresolved_settlements", state="landed")
            if not unanswered:
                time.sleep(0.2)  # the pass runs at start: polled for, not timed
    assert unanswered == 1
    logged = (tmp_path / "worker.log").read_text()
    assert f"payment {pk} ({AMOUNT} atomic USDC for {TOOL}" in logged
    assert "has not been answered" in logged

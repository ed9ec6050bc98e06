"""``kamiyo payments reconcile``: a payment charged on chain that nobody answered is reported.

The journal holds a pending settlement (as the cashier leaves one whose send got no answer);
its authorization is then used on anvil, by a transaction KAMIYO never heard back from.
"""

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kamiyo.cli import app
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.db.tables import Payment
from kamiyo.payments.cashier import payment_key
from kamiyo.payments.outcomes import digest
from kamiyo.payments.settlements import as_json, identity_of
from tests.payments.evm_chain import (
    EvmChain,
    authorization_args,
    exact_requirements,
    sign_exact_payment,
    split_signature,
)
from tests.payments.test_evm_chain import TRANSFER_VRS
from tests.payments.test_evm_settlement import AMOUNT, TOOL, network_of

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


def test_reconcile_reports_a_payment_charged_but_never_answered(
    evm_chain: EvmChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = evm_chain
    url = f"sqlite+aiosqlite:///{tmp_path / 'kamiyo.db'}"
    monkeypatch.setenv("KAMIYO_DATABASE_URL", url)
    pay_to = chain.new_payer(0).address
    network = network_of(chain, pay_to)
    monkeypatch.setenv("KAMIYO_X402_NETWORKS", json.dumps([network.model_dump(mode="json")]))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0

    payer = chain.new_payer()
    requirements = exact_requirements(chain, AMOUNT, pay_to=pay_to)
    payment = sign_exact_payment(chain, requirements, payer)
    identity = identity_of(payment, requirements, None)
    assert identity is not None
    now = dt.datetime.now(dt.UTC)
    pk = asyncio.run(
        _insert(
            url,
            Payment(
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
            ),
        )
    )
    # Not on chain yet: still pending, nothing reported as charged.
    still = runner.invoke(app, ["payments", "reconcile", "--json"])
    assert still.exit_code == 0, still.stderr
    assert [(s["pk"], s["why"]) for s in json.loads(still.stdout)["pending"]] == [
        (pk, "the authorization is not used yet and still valid")
    ]

    v, r, s = split_signature(payment.payload["signature"])
    chain.send(TRANSFER_VRS, *authorization_args(payment), v, r, s)

    found = runner.invoke(app, ["payments", "reconcile", "--json"])
    assert found.exit_code == 0, found.stderr
    [charged] = json.loads(found.stdout)["landed_unanswered"]
    assert (charged["pk"], charged["amount"], charged["tool"]) == (pk, AMOUNT, TOOL)
    assert charged["payer"] == payer.address
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

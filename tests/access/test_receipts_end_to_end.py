"""A key holder pays per call with x402's own client, and the receipt shows everywhere.

``kamiyo serve`` takes payments on anvil; a free-tier key asks ``/api/v1/risk/Euler`` (the
tier lacks it) through the ``x402`` package's httpx client, which pays $0.05 and retries. Then
``kamiyo usage show --json`` lists the receipt with the chain's transaction, the usage page and
its CSV show it over plain HTTP (logged in through the mailed link), the chain verifies, and the
operators' page lists it. On PostgreSQL, the production backend; SQLite has the same path through
the gate in process (test_receipts.py), which keeps this suite's time down (each run here starts
a server and x402's client).
"""

import csv
import io
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner

from kamiyo.cli import app
from tests.billing.smtp import running_mailbox
from tests.mcpserver.conftest import running_http_server
from tests.payments.conftest import x402_python
from tests.payments.evm_chain import EvmChain, evm_chain, rpc
from tests.payments.test_x402_client import kamiyo_env
from tests.payments.x402_runs import outcome_of, private_file, run_pay

__all__ = ["evm_chain", "x402_python"]  # fixtures of tests/payments
RISK_PRICE = 50_000  # $0.05
runner = CliRunner()


def kamiyo(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def usage_show(email: str) -> dict[str, Any]:
    code, out, err = kamiyo("usage", "show", email, "--json")
    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    return shown


def test_a_paid_call_by_a_key_holder_shows_its_receipt_in_the_cli_and_on_the_dashboard(
    x402_python: Path,
    evm_chain: EvmChain,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url_for_cli: str,
) -> None:
    database = {"KAMIYO_DATABASE_URL": postgres_url_for_cli}
    monkeypatch.setenv("KAMIYO_DATABASE_URL", postgres_url_for_cli)  # the CLI reads it too
    email = f"payer-{uuid.uuid4().hex[:6]}@example.com"
    assert kamiyo("accounts", "create", email)[0] == 0
    code, key, err = kamiyo("keys", "create", email)
    assert code == 0, err
    payer = evm_chain.new_payer()
    with running_mailbox() as mailbox:
        env = kamiyo_env(evm_chain, tmp_path) | mailbox.env() | database
        env |= {"KAMIYO_PUBLIC_URL": "http://127.0.0.1", "KAMIYO_METER_FLUSH_S": "0.2"}
        with running_http_server(tmp_path, [], env) as base:
            proc = run_pay(
                x402_python,
                "rest",
                [f"{base}/api/v1/risk/Euler"],
                private_file(tmp_path, "payer.key", payer.key.hex()),
                (evm_chain.network, evm_chain.token),
                extra=("--bearer-file", str(private_file(tmp_path, "api.key", key.strip()))),
                max_amount=RISK_PRICE,
            )
            outcome = outcome_of(proc)
            assert outcome["status"] == 200, outcome
            sent = outcome["payment_response"]
            transaction = sent["transaction"]
            assert int(
                rpc(evm_chain.rpc_url, "eth_getTransactionReceipt", transaction)["status"], 16
            )

            # The CLI reads the database: the meter writes every 0.2 s.
            deadline = time.monotonic() + 20
            while not (shown := usage_show(email))["receipts"] and time.monotonic() < deadline:
                time.sleep(0.2)
            [receipt] = shown["receipts"]
            assert receipt["tool"] == "assess_protocol_risk"
            assert receipt["network"] == evm_chain.network
            assert receipt["transaction"] == transaction
            assert receipt["payer"].lower() == payer.address.lower()
            assert (receipt["amount"], receipt["amount_usd"]) == (RISK_PRICE, "$0.05")
            assert receipt["key_pk"] is not None

            with httpx2.Client(base_url=base, timeout=10) as browser:
                assert browser.post("/login", data={"email": email}).status_code == 200
                mailbox.wait_for(1)
                [mail] = mailbox.to(email)
                [link] = re.findall(r"http://127\.0\.0\.1(/login/[A-Za-z0-9_-]{43})", mail.text)
                logged_in = browser.post(link)
                assert logged_in.status_code == 303, logged_in.text
                page = browser.get("/dashboard/usage")
                assert page.status_code == 200
                [row] = re.findall(r'<tr class="receipt">(.*?)</tr>', page.text, re.S)
                assert f'<code class="transaction">{transaction}</code>' in row
                assert '<td class="amount">$0.05</td>' in row
                exported = browser.get("/dashboard/usage.csv").text
                assert kamiyo("accounts", "set-role", email, "admin")[0] == 0
                operators = browser.get("/admin")
                assert operators.status_code == 200
                assert f'<code class="transaction">{transaction}</code>' in operators.text
            [paid] = [r for r in csv.reader(io.StringIO(exported)) if r[0] == "receipt"]
            assert paid[-1] == transaction
    code, _, err = kamiyo("usage", "verify", email)
    assert code == 0, err

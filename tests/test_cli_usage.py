"""``kamiyo usage show``: an account's calls and its receipts, as a table and as JSON, on SQLite
and PostgreSQL."""

import asyncio
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from kamiyo.access import accounts
from kamiyo.access.meter import Meter, Receipt, UsageEvent
from kamiyo.cli import app
from kamiyo.config import Settings
from kamiyo.payments import journal
from kamiyo.runtime import open_runtime

runner = CliRunner()
BASE = "eip155:8453"
PAYER = "0x" + "ab" * 20
TRANSACTION = "0x" + "cd" * 32


def kamiyo(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def record_a_paid_call(email: str) -> Receipt:
    """A free-tier account calls a tool its tier lacks and pays for it (the journal settles the
    payment as the cashier does; the meter writes the call as the gate records it)."""

    async def work() -> Receipt:
        async with open_runtime(Settings(), upgrade=True) as runtime:
            async with runtime.sessions() as session:
                account = await accounts.find_account(session, email)
                assert account is not None
            entry = journal.Entry("k1", "h1", None, "assess_protocol_risk", BASE, 50_000)
            held = await journal.hold(runtime.sessions, entry)
            assert isinstance(held, journal.Held)
            await journal.settled(runtime.sessions, held, PAYER, TRANSACTION, {}, None)
            receipt = Receipt(held.pk, BASE, PAYER, 50_000, TRANSACTION)
            meter = Meter(flush_interval_s=3600)
            async with meter.running(runtime.sessions):
                for tool, paid in [("search_exploits", None), ("assess_protocol_risk", receipt)]:
                    meter.record(
                        UsageEvent(
                            at=dt.datetime.now(dt.UTC),
                            account_pk=account.pk,
                            key_pk=None,
                            tool=tool,
                            tier="x402" if paid else "free",
                            status="ok",
                            duration_us=1500,
                            result_count=1,
                            cost_units=1,
                            receipt=paid,
                        )
                    )
            return receipt

    return asyncio.run(work())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_usage_show_lists_receipts_in_the_table_and_in_json(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "postgresql":
        monkeypatch.setenv("KAMIYO_DATABASE_URL", request.getfixturevalue("postgres_url_for_cli"))
    assert kamiyo("accounts", "create", "paid@example.com")[0] == 0
    receipt = record_a_paid_call("paid@example.com")
    code, out, err = kamiyo("usage", "show", "paid@example.com", "--by", "tool", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert {row["key"] for row in shown["rows"]} == {"search_exploits", "assess_protocol_risk"}
    [paid] = shown["receipts"]
    assert paid["tool"] == "assess_protocol_risk"
    assert paid["payment_pk"] == receipt.payment_pk
    assert (paid["network"], paid["network_name"]) == (BASE, "Base")
    assert (paid["payer"], paid["transaction"]) == (PAYER, TRANSACTION)
    assert (paid["amount"], paid["amount_usd"]) == (50_000, "$0.05")
    code, table, _ = kamiyo("usage", "show", "paid@example.com")
    assert code == 0
    assert "Receipts: calls paid per call (x402)" in table
    assert "$0.05" in table
    # Addresses and hashes are folded onto lines, never cut short.
    assert TRANSACTION in "".join(part.strip(" │┃|") for part in table.split())
    code, _, err = kamiyo("usage", "verify", "paid@example.com")
    assert code == 0, err


def test_usage_show_says_when_nothing_was_paid_per_call() -> None:
    assert kamiyo("accounts", "create", "sub@example.com", "--tier", "team")[0] == 0
    code, table, _ = kamiyo("usage", "show", "sub@example.com")
    assert code == 0
    assert "No calls paid per call (x402) in the last 30 days." in table
    code, out, _ = kamiyo("usage", "show", "sub@example.com", "--json")
    assert json.loads(out)["receipts"] == []

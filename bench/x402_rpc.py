"""JSON-RPC calls that Solana `exact` payments cost, before and after the endpoint pool.

    python -m bench.x402_rpc                        # both paths, 70 payments + 30 retries
    python -m bench.x402_rpc --path old --confirm-ms 0

Each path runs on a fresh local chain (LiteSVM behind the tests' two JSON-RPC endpoints) and
takes ``--payments`` payments through the real cashier (x402 reading, the settlement journal on
SQLite, verify, settle or release), ``--concurrency`` at a time. ``--retries`` of them are sent
again by their client, in equal shares of three kinds: after the first call failed before
settling (the tool failed: released, nothing taken), after the answer was lost (already
settled), and while the first call is still running (in flight). Every call to either endpoint
is counted by method once the payments are signed.

Paths: ``old`` is the signer before the pool (x402's, on ``rpc_urls[0]``, polling each
confirmation on its own, simulating again in settle), kept here and only here; ``new`` is
what ``LocalFacilitator`` builds. The local chain confirms at once; a real one answers
``processed`` for a while first, so ``--confirm-ms`` (default 800, about mainnet's confirmed
commitment) makes status reads say ``processed`` for that long after a send.
"""

import argparse
import asyncio
import json
import random
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from solders.keypair import Keypair

from kamiyo.chains import AcceptedNetwork
from kamiyo.config import DatabaseSettings, Settings, X402Settings
from kamiyo.payments.cashier import Cashier
from kamiyo.payments.facilitators import LocalFacilitator
from kamiyo.payments.outcomes import Declined, Hold, Quote, RawPayment
from kamiyo.payments.prices import Price
from kamiyo.payments.svm import CheckedExactSvm, ConfirmingKeypairSigner
from kamiyo.runtime import Runtime, open_runtime
from tests.payments import solana_rpc
from tests.payments.solana_chain import SolanaChain, running_solana_chain, sign_exact_svm_payment

HERE = Path(__file__).parent
PRICE = 10_000
TOOL_S = 0.05  # the paid tool's own time, between verify and settle
RETRY_KINDS = ("after_failure", "after_answer", "in_flight")


class OldLocalFacilitator(LocalFacilitator):
    """The Solana facilitator before the pool: one URL, x402's confirmation, no cache."""

    def _register_svm(self, x402: X402Settings, networks: list[AcceptedNetwork]) -> None:
        key = x402.svm_fee_payer_key
        assert key is not None
        keypair = Keypair.from_base58_string(key.get_secret_value())
        for network in networks:
            signer = ConfirmingKeypairSigner(keypair, rpc_url=network.rpc_urls[0])
            self._facilitator.register([network.network], CheckedExactSvm(signer))


@contextmanager
def confirmation_delay(seconds: float) -> Iterator[None]:
    """Status reads answer ``processed`` for ``seconds`` after a send (this process only)."""
    methods = solana_rpc._METHODS
    send, statuses = methods["sendTransaction"], methods["getSignatureStatuses"]
    landed: dict[str, float] = {}

    def timed_send(ledger: Any, params: list[Any]) -> Any:
        signature = send(ledger, params)
        landed.setdefault(signature, time.monotonic())
        return signature

    def delayed_statuses(ledger: Any, params: list[Any]) -> Any:
        answer = statuses(ledger, params)
        for signature, value in zip(params[0], answer["value"], strict=True):
            young = time.monotonic() - landed.get(signature, 0.0) < seconds
            if value is not None and young:
                value.update(confirmationStatus="processed", confirmations=0)
        return answer

    methods["sendTransaction"], methods["getSignatureStatuses"] = timed_send, delayed_statuses
    try:
        yield
    finally:
        methods["sendTransaction"], methods["getSignatureStatuses"] = send, statuses


async def one_payment(
    cashier: Cashier, runtime: Runtime, quote: Quote, sent: dict[str, Any], kind: str
) -> Counter[str]:
    """One payment's calls (one, or two with its retry); the outcomes by name."""
    outcomes: Counter[str] = Counter()
    payment = RawPayment(sent)

    async def call(*, tool_fails: bool = False, duplicate: bool = False) -> None:
        accepted = await cashier.accept(payment, quote, runtime.sessions)
        if duplicate:  # the client's impatient second send, while the first is running
            again = await cashier.accept(payment, quote, runtime.sessions)
            outcomes[again.reason if isinstance(again, Declined) else "answered"] += 1
        if not isinstance(accepted, Hold):
            outcomes[accepted.reason if isinstance(accepted, Declined) else "answered"] += 1
            return
        await asyncio.sleep(TOOL_S)
        if tool_fails:
            await cashier.release(accepted, "tool_failed", runtime.sessions)
            outcomes["released"] += 1
            return
        result = await cashier.settle(accepted, {"ok": True}, runtime.sessions)
        outcomes[type(result).__name__.lower()] += 1

    if kind == "after_failure":
        await call(tool_fails=True)
        await call()
    elif kind == "in_flight":
        await call(duplicate=True)
    else:
        await call()
        if kind == "after_answer":
            await call()
    return outcomes


async def run_path(
    path: str, runtime: Runtime, args: argparse.Namespace, rng: random.Random
) -> dict[str, Any]:
    with running_solana_chain() as chain, confirmation_delay(args.confirm_ms / 1000):
        return await _run_on(chain, path, runtime, args, rng)


async def _run_on(
    chain: SolanaChain, path: str, runtime: Runtime, args: argparse.Namespace, rng: random.Random
) -> dict[str, Any]:
    network = AcceptedNetwork(
        network=chain.network,
        pay_to=str(chain.pay_to),
        rpc_urls=[chain.rpc_url, chain.backup_rpc_url],
    )
    x402 = X402Settings(networks=[network], svm_fee_payer_key=SecretStr(str(chain.fee_payer)))
    facilitator = OldLocalFacilitator(x402) if path == "old" else LocalFacilitator(x402)
    cashier = Cashier(x402, facilitator, secret_key=SecretStr("bench-secret-" + "x" * 32))
    await cashier.start()
    try:
        quote = cashier.quote("search_exploits", Price(PRICE), None, "https://kamiyo.test/mcp")
        kinds = [RETRY_KINDS[i % len(RETRY_KINDS)] for i in range(args.retries)]
        kinds += ["plain"] * (args.payments - len(kinds))
        rng.shuffle(kinds)
        sent = []
        for _ in kinds:  # signed up front: the client's own reads are not ours to count
            payment = sign_exact_svm_payment(
                chain, quote.required.accepts[0], chain.new_wallet(usdc=PRICE)
            )
            sent.append(payment.model_dump(mode="json", by_alias=True, exclude_none=True))
        merchant = chain.token_balance(chain.pay_to)
        start = [len(server.calls) for server in chain.servers]
        gate = asyncio.Semaphore(args.concurrency)

        async def paced(payment: dict[str, Any], kind: str) -> Counter[str]:
            async with gate:
                return await one_payment(cashier, runtime, quote, payment, kind)

        started = time.perf_counter()
        results = await asyncio.gather(*(paced(p, k) for p, k in zip(sent, kinds, strict=True)))
        seconds = time.perf_counter() - started
    finally:
        await cashier.stop()
    outcomes: Counter[str] = sum(results, Counter())
    calls: Counter[str] = Counter()
    for server, begin in zip(chain.servers, start, strict=True):
        calls.update(server.calls[begin:])
    return {
        "path": path,
        "calls": dict(calls),
        "total": sum(calls.values()),
        "outcomes": dict(outcomes),
        "received": chain.token_balance(chain.pay_to) - merchant,
        "seconds": round(seconds, 2),
    }


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    console = Console(width=100)
    paid_calls = args.payments + args.retries
    title = (
        f"JSON-RPC calls: {args.payments} payments + {args.retries} retries "
        f"({paid_calls} paid calls), {args.concurrency} at a time, confirmed after "
        f"{args.confirm_ms} ms"
    )
    table = Table(title=title)
    table.add_column("method")
    for result in results:
        table.add_column(result["path"], justify="right")
    if len(results) == 2:
        table.add_column("saved", justify="right")
    methods = sorted({m for r in results for m in r["calls"]})
    for method in [*methods, "total"]:
        counts = [r["total"] if method == "total" else r["calls"].get(method, 0) for r in results]
        row = [method, *(str(c) for c in counts)]
        if len(counts) == 2:
            row.append(f"{1 - counts[1] / counts[0]:.0%}" if counts[0] else "-")
        table.add_row(*row)
    table.add_row("per paid call", *(f"{r['total'] / paid_calls:.2f}" for r in results))
    table.add_row("seconds", *(str(r["seconds"]) for r in results))
    console.print(table)
    for result in results:
        console.print(f"{result['path']}: outcomes {result['outcomes']}, USDC {result['received']}")


async def bench(args: argparse.Namespace, folder: str) -> list[dict[str, Any]]:
    url = f"sqlite+aiosqlite:///{folder}/journal.db"
    settings = Settings(database=DatabaseSettings(url=url), environment="test", _env_file=None)
    paths = ["old", "new"] if args.path == "both" else [args.path]
    async with open_runtime(settings, upgrade=True) as runtime:
        return [await run_path(path, runtime, args, random.Random(args.seed)) for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", choices=["old", "new", "both"], default="both")
    parser.add_argument("--payments", type=int, default=70, help="distinct payments")
    parser.add_argument("--retries", type=int, default=30, help="of them, sent again")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--confirm-ms", type=int, default=800)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    if not 0 <= args.retries <= args.payments:
        parser.error("--retries must be between 0 and --payments")
    warnings.filterwarnings("ignore", message=".*is deprecated")  # solana-py, in the old path
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(bench(args, folder))
    report(results, args)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = f"x402_rpc-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    (out / name).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()

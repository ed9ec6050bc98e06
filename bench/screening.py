"""Screening a wallet with a 10,000-transaction history: cold and warm.

    python -m bench.screening                 # 3 cold rounds, 200 warm calls
    python -m bench.screening --rounds 5 --warm 500

The history is ``bench.explorer``'s (8,000 normal transactions, half of them from the Ronin
attacker, 1,500 token transfers in, 500 approvals) on the test suite's loopback explorer; the
incident data is the bundled dataset in a fresh SQLite file. **Cold**: ``intel.screen_wallet``
with an enterprise scope (every page, the second hop), fresh explorer clients each round: the
whole read, the look-ups and the answer. **Warm**: the same call through the service pipeline
(``service.pipeline.execute``, the open gate, the answer cache), after a first call: what a
repeated screen within the cache's lifetime costs. Results are printed and written to
``bench/results/screening-<timestamp>.json``.
"""

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from bench.explorer import NORMAL, TOKENS, fill
from kamiyo.access.gate import OpenGate
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.explorers import open_explorers
from kamiyo.intel import AddressScreenQuery, Scope, screen_wallet
from kamiyo.runtime import open_runtime
from kamiyo.service.answers import Answer
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.service.pipeline import Caller, execute
from kamiyo.service.state import ServerState
from tests.explorers.explorer_server import TEST_KEY, ExplorerServer, Options

RESULTS = Path(__file__).parent / "results"
# bench.explorer's history, for a wallet no incident lists (its own 0x11…11 is a YIEDL listing).
WALLET = "0x7a11e70000000000000000000000000000000001"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kamiyo-bench-screening-"))
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{folder / 'bench.db'}"),
        _env_file=None,
    )
    query = AddressScreenQuery(wallet_address=WALLET)
    cold: list[dict[str, float | int | str]] = []
    with ExplorerServer("etherscan", api_key=TEST_KEY) as server:
        fill(server, WALLET)
        options = Options(urls={"ethereum": server.api_url}, etherscan_api_key=SecretStr(TEST_KEY))
        async with open_runtime(settings, upgrade=True) as runtime:
            for _ in range(args.rounds):
                before = len(server.requests)
                started = time.perf_counter()
                async with open_explorers(options) as explorers, runtime.sessions() as session:
                    answer = await screen_wallet(
                        session, query, Scope(detailed=True), explorers, budget_s=30
                    )
                cold.append(
                    {
                        "wall_s": time.perf_counter() - started,
                        "calls": len(server.requests) - before,
                        "transactions": answer.coverage.transactions_scanned,
                        "counterparties": answer.coverage.counterparties_found,
                        "verdict": answer.verdict.value,
                    }
                )
            served = settings.with_changes(
                explorers={
                    "defaults": False,
                    "urls": {"ethereum": server.api_url},
                    "etherscan_api_key": SecretStr(TEST_KEY),
                    "allow_private": True,
                },
                answers={"cache_ttl_s": 600},
            )
            state = ServerState(served, OpenGate(100), runtime=runtime)
            operation = CATALOGUE[ToolName.CHECK_WALLET_INTERACTIONS]
            first = await execute(state, operation, query, Caller())  # fills the answer cache
            assert isinstance(first, Answer), first
            warm = []
            for _ in range(args.warm):
                started = time.perf_counter()
                again = await execute(state, operation, query, Caller())
                warm.append(time.perf_counter() - started)
                assert isinstance(again, Answer)
                assert again.structured == first.structured
            await state.aclose()
    walls = [float(r["wall_s"]) for r in cold]
    warm_ms = sorted(w * 1000 for w in warm)
    cold_median = statistics.median(walls)
    warm_p50, warm_p99 = statistics.median(warm_ms), warm_ms[int(len(warm_ms) * 0.99) - 1]
    report = {
        "history": {"normal": NORMAL, "token_transfers": TOKENS},
        "cold": cold,
        "cold_wall_s_median": cold_median,
        "warm_ms": {"p50": warm_p50, "p99": warm_p99},
    }
    print(
        f"cold: {cold[0]['transactions']} transactions, {cold[0]['calls']} explorer calls, "
        f"{cold[0]['counterparties']} listed counterparties, verdict {cold[0]['verdict']}; "
        f"wall median {cold_median:.2f} s over {len(cold)} rounds "
        f"(min {min(walls):.2f}, max {max(walls):.2f})\n"
        f"warm (answer cache, through the pipeline): p50 {warm_p50:.3f} ms, "
        f"p99 {warm_p99:.3f} ms over {len(warm)} calls"
    )
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"screening-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

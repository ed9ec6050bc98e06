"""Reading a 10,000-transaction history from the loopback explorer: wall time cold, and calls.

    python -m bench.explorer                     # Etherscan V2 flavour, 5 rounds
    python -m bench.explorer --flavour blockscout --rounds 3 --calls-per-second 5

The wallet has 8,000 normal transactions, 1,500 ERC-20 transfers in (each its own transaction)
and 500 approvals: 10,000 transactions, read as 9 + 2 + 1 pages of 1,000 plus one empty
internal list. Each round opens fresh clients (new connections: cold) and reads the whole
history through ``Explorers.history``, the call the screening makes. The explorer is the test
suite's loopback server (``tests/explorers/explorer_server.py``), so the time is the client's
and the local server's, not a provider's network or rate limit: with ``--calls-per-second`` at a
provider's real limit (5 for Etherscan's free tier and keyless Blockscout) the pacing shows.
Results are printed and written to ``bench/results/explorer-<timestamp>.json``.
"""

import argparse
import asyncio
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Literal, cast

from pydantic import SecretStr

from kamiyo.explorers import deadline_in, open_explorers
from tests.explorers.explorer_server import (
    RONIN_ATTACKER,
    TEST_KEY,
    USDC,
    ExplorerServer,
    Options,
)

RESULTS = Path(__file__).parent / "results"
WALLET = "0x1111111111111111111111111111111111111111"
NORMAL, TOKENS, APPROVALS = 8_000, 1_500, 500


def fill(server: ExplorerServer, wallet: str = WALLET) -> None:
    """The history: 8,000 normal transactions (every other one from the Ronin attacker),
    1,500 ERC-20 transfers in, 500 approvals, all of ``wallet``."""
    block = 0
    for n in range(NORMAL):
        block += 1
        sender, recipient = (RONIN_ATTACKER, wallet) if n % 2 else (wallet, f"0x{n:040x}")
        server.send(1, sender, recipient, 10**15 + n, block=block)
    for n in range(TOKENS):
        block += 1
        server.token_transfer(1, USDC, f"0x{n + 1:040x}", wallet, 1_000_000 + n, block=block)
    for n in range(APPROVALS):
        block += 1
        server.approve(1, wallet, f"0x{n + 1:040x}", RONIN_ATTACKER, n, block=block)


async def _round(server: ExplorerServer, rate: float) -> dict[str, float | int | bool]:
    chain = {"ethereum": server.api_url}
    key = SecretStr(TEST_KEY) if server.flavour == "etherscan" else None
    options = Options(urls=chain, etherscan_api_key=key, calls_per_second=rate)
    started = time.perf_counter()
    async with open_explorers(options) as explorers:
        history = await explorers.history(WALLET, "ethereum", deadline=deadline_in(60))
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "calls": history.calls,
        "transactions": history.transactions_scanned,
        "transfers": len(history.transfers),
        "approvals": len(history.approvals),
        "complete": history.complete,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flavour", choices=["etherscan", "blockscout"], default="etherscan")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls-per-second", type=float, default=1000.0)
    args = parser.parse_args()
    flavour = cast(Literal["etherscan", "blockscout"], args.flavour)
    api_key = TEST_KEY if flavour == "etherscan" else None
    with ExplorerServer(flavour, api_key=api_key) as server:
        fill(server)
        rounds = [await _round(server, args.calls_per_second) for _ in range(args.rounds)]
    walls = [float(r["wall_s"]) for r in rounds]
    report = {
        "flavour": flavour,
        "calls_per_second": args.calls_per_second,
        "history": {"normal": NORMAL, "token_transfers": TOKENS, "approvals": APPROVALS},
        "rounds": rounds,
        "wall_s": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
    }
    first = rounds[0]
    print(
        f"{flavour}: {first['transactions']} transactions, {first['transfers']} transfers, "
        f"{first['approvals']} approvals in {first['calls']} calls; cold wall time median "
        f"{report['wall_s']['median']:.3f} s (min {min(walls):.3f}, max {max(walls):.3f}) "
        f"over {len(rounds)} rounds at {args.calls_per_second:g} calls/s"
    )
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"explorer-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

"""One KAMIYO instance settling EVM payments, in a process of its own (for the nonce proof).

Run as ``python -m tests.payments.evm_instance``. It reads one JSON line from stdin (``x402``
and ``redis`` settings, ``database_url``, ``tool``, ``amount``, ``payments`` as clients send
them), opens its own cashier (its own Web3, RPC pool and Redis nonce coordinator), prints
``ready``, waits for a line (so that instances start settling together), settles every payment
at once and prints one JSON line: per payment, whether it settled and its transaction.
"""

import asyncio
import json
import sys
from typing import Any

import anyio.to_thread
from pydantic import SecretStr

from kamiyo.config import RedisSettings, X402Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.payments.cashier import Cashier
from kamiyo.payments.facilitators import LocalFacilitator
from kamiyo.payments.outcomes import Hold, RawPayment, Settled
from kamiyo.payments.prices import Price


async def main() -> None:
    config: dict[str, Any] = json.loads(sys.stdin.readline())
    x402 = X402Settings(_env_file=None, **config["x402"])
    redis = RedisSettings(_env_file=None, **config["redis"])
    engine = create_engine(config["database_url"])
    sessions = session_factory(engine)
    cashier = Cashier(x402, LocalFacilitator(x402, redis), secret_key=SecretStr("k" * 32))
    tool, amount = str(config["tool"]), int(config["amount"])
    await cashier.start()
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)

    async def settle(sent: dict[str, Any]) -> dict[str, Any]:
        quote = cashier.quote(tool, Price(amount), None, f"mcp://tool/{tool}")
        hold = await cashier.accept(RawPayment(sent), quote, sessions)
        if not isinstance(hold, Hold):
            return {"settled": False, "reason": hold.reason if hasattr(hold, "reason") else "?"}
        outcome = await cashier.settle(hold, {"paid": True}, sessions)
        if isinstance(outcome, Settled):
            return {"settled": True, "transaction": outcome.receipt.transaction}
        return {"settled": False, "reason": outcome.reason}

    try:
        results = await asyncio.gather(*(settle(sent) for sent in config["payments"]))
    finally:
        await cashier.stop()
        await engine.dispose()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

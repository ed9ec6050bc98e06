"""KAMIYO served for benchmarks: the real server with the enterprise tier's limits raised.

    python -m bench.kamiyo_server --transport http --port 8002          # AccountGate
    python -m bench.kamiyo_server --transport http --port 8002 --open   # OpenGate
    KAMIYO_API_KEY=kmy_live_... python -m bench.kamiyo_server           # stdio

The enterprise tier allows 500 calls a minute, so a load generator would mostly measure
refusals. This process (and only this process: ``kamiyo.tiers`` is not edited) raises the
enterprise tier to 10**9 calls a minute and a day before building the app. The gate still does
all its work on every call: it identifies the key, looks up the tier, counts the call in the
limiter (in memory, or in Redis with ``KAMIYO_REDIS_URL``) and meters it; it just never refuses.
``--open`` swaps the gate for ``OpenGate`` (no credential, no limits, no metering) to isolate
what the gate costs. Settings come from ``KAMIYO_*`` variables as for ``kamiyo serve``.
"""

import argparse
import asyncio
import dataclasses

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import kamiyo.mcpserver.server
import kamiyo.web.app
from kamiyo.access import accounts, keys
from kamiyo.access.gate import Gate, OpenGate
from kamiyo.config import Settings
from kamiyo.observability import configure_logging
from kamiyo.tiers import TIERS, Tier

RAISED = 10**9
BENCH_EMAIL = "bench@example.com"


def raise_limits() -> None:
    """Let the enterprise tier make 10**9 calls a minute and a day, in this process only."""
    TIERS[Tier.ENTERPRISE] = dataclasses.replace(
        TIERS[Tier.ENTERPRISE], requests_per_minute=RAISED, requests_per_day=RAISED
    )


def open_gate(settings: Settings) -> Gate:
    return OpenGate(settings.answers.max_results)


async def create_enterprise_key(
    sessions: async_sessionmaker[AsyncSession], email: str = BENCH_EMAIL
) -> str:
    """An enterprise account and an API key for it; returns the key."""
    async with sessions() as session:
        account = await accounts.create_account(session, email, Tier.ENTERPRISE)
        new = await keys.create_key(session, account, "bench")
        await session.commit()
    return new.key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--open", action="store_true", help="serve with OpenGate")
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log.level, settings.log.format)
    raise_limits()
    # --open: OpenGate, every call admitted, nothing counted or recorded.
    gate = open_gate(settings) if args.open else None
    if args.transport == "stdio":
        secret = settings.auth.api_key or settings.auth.token
        credential = (secret.get_secret_value() if secret else "") or None
        asyncio.run(kamiyo.mcpserver.server.serve_stdio(settings, credential, gate))
        return

    import uvicorn

    app = kamiyo.web.app.create_app(
        settings,
        kamiyo.mcpserver.server.build_server,
        gate=gate,
        stateless=True,
        json_response=True,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, server_header=False)


if __name__ == "__main__":
    main()

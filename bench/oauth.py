"""The OAuth authorization server's answers, in process: what a hosted connector waits for.

    python -m bench.oauth                   # 200 requests of each kind, SQLite
    python -m bench.oauth --requests 500 --database-url postgresql://127.0.0.1:5432/bench
    python -m bench.oauth --redis-url redis://127.0.0.1:6379/0   # rate limits counted in Redis

Hosted connectors (Claude, ChatGPT) call discovery, registration and the token endpoint from
the vendor's servers and give up after about 10 seconds. This serves the app over ASGI (httpx
ASGITransport: no network, no uvicorn) on a migrated database and times, per request kind,
``--requests`` requests one after another: the authorization-server metadata, a dynamic client
registration, an authorization-code exchange (the code made beforehand through
``access/oauth_grants.create_code``, untimed) and a refresh. The report gives p50, p99 and the
maximum in milliseconds. The per-address rate limits (``web/oauth_limits.py``, in memory or
``--redis-url``) are checked on each timed request, their limits raised above the run's counts.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2

from kamiyo.access import accounts, oauth_grants
from kamiyo.config import DatabaseSettings, Settings
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver.server import build_server
from kamiyo.tiers import Tier
from kamiyo.web.app import create_app

HERE = Path(__file__).parent
BASE = "http://127.0.0.1:8000"
REDIRECT = "http://127.0.0.1:9/callback"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def _timed(count: int, request: Callable[[], Awaitable[httpx2.Response]]) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await request()
        samples.append(time.perf_counter() - started)
        if response.status_code >= 400:
            raise RuntimeError(
                f"{response.request.url.path}: {response.status_code} {response.text}"
            )
    return samples


async def bench(
    requests: int, database_url: str, redis_url: str | None = None
) -> dict[str, object]:
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        environment="test",
        site={"public_url": BASE},
        # The rate limits are checked on every request, as served, but set above what one
        # run sends from its one address: the run times answers, not refusals.
        auth={
            "oauth_register_limit": f"{requests * 4}/minute",
            "oauth_token_limit": f"{requests * 4}/minute",
        },
        # With Redis the limits count there, as instances sharing one do.
        redis={"url": redis_url, "prefix": f"kamiyo-bench-{secrets.token_hex(4)}"},
        _env_file=None,
    )
    app = create_app(settings, build_server, stateless=True, json_response=True)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
            registration = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
            client_id = (await http.post("/oauth/register", json=registration)).json()["client_id"]
            # The app keeps its sessions to itself; the codes are made through our own.
            engine = create_engine(settings.database.resolved_url)
            sessions = session_factory(engine)
            async with sessions() as session:
                account = await accounts.create_account(session, "bench@example.com", Tier.TEAM)
                await session.commit()
                account_pk = account.pk

            async def code_pairs() -> list[tuple[str, str]]:
                pairs = []
                async with sessions() as session:
                    for _ in range(requests):
                        verifier = secrets.token_urlsafe(48)
                        digest = hashlib.sha256(verifier.encode()).digest()
                        challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                        code = await oauth_grants.create_code(
                            session,
                            oauth_grants.CodeRequest(
                                account_pk,
                                client_id,
                                "bench",
                                REDIRECT,
                                True,
                                challenge,
                                BASE + "/mcp",
                                [],
                            ),
                        )
                        pairs.append((code, verifier))
                    await session.commit()
                return pairs

            pairs = iter(await code_pairs())
            refresh_tokens: list[str] = []

            async def exchange() -> httpx2.Response:
                code, verifier = next(pairs)
                answer = await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": REDIRECT,
                        "client_id": client_id,
                        "code_verifier": verifier,
                    },
                )
                refresh_tokens.append(answer.json().get("refresh_token", ""))
                return answer

            refreshing = iter(refresh_tokens)

            async def refresh() -> httpx2.Response:
                return await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": next(refreshing),
                        "client_id": client_id,
                    },
                )

            report = {
                "metadata": _percentiles(
                    await _timed(
                        requests, lambda: http.get("/.well-known/oauth-authorization-server")
                    )
                ),
                "register": _percentiles(
                    await _timed(requests, lambda: http.post("/oauth/register", json=registration))
                ),
                "token_code": _percentiles(await _timed(requests, exchange)),
                "token_refresh": _percentiles(await _timed(requests, refresh)),
            }
            await engine.dispose()
    return {
        "requests": requests,
        "backend": database_url.split(":")[0],
        "limits_in": "redis" if redis_url else "memory",
        "report": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests of each kind")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp folder")
    parser.add_argument("--redis-url", default=None, help="rate limits in Redis (default: memory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
        result = asyncio.run(bench(args.requests, url, args.redis_url))
    print(json.dumps(result, indent=2))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"oauth-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Every REST route, fuzzed as the MCP tools are (tests/mcpserver/test_fuzz.py), with fewer
examples: path and query parameters drawn from the operation's input schema plus hostile
mutations, sent as text (as a URL carries them; a POST's as its JSON body) through the ASGI
app on the account gate and PostgreSQL. Every answer is JSON, a 200 or a one-line 400/404
problem, never a 500; nothing is logged at ERROR or with a traceback; every request is counted
and recorded once.
"""

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.meter import chain_of
from kamiyo.config import Settings
from kamiyo.db.usage import UsageRecord
from kamiyo.mcpserver.server import build_server
from kamiyo.mcpserver.tools import input_schema
from kamiyo.runtime import open_runtime
from kamiyo.service.catalogue import OPERATIONS, Operation
from kamiyo.tiers import Tier
from kamiyo.web.app import create_app
from tests.fuzzing import (
    FUZZ,
    HUGE_IN_A_URL,
    arguments,
    check_log,
    check_problem,
    loaded_postgres,
)
from tests.mcpserver.test_invalid_calls import new_key

EXAMPLES_PER_ROUTE = 30
ROUTED = [op for op in OPERATIONS if op.rest is not None]
# A URL cannot carry a lone surrogate: httpx refuses to encode one.
STRATEGIES = {
    op.name.value: arguments(
        input_schema(op, transfers=False), surrogates=False, huge=HUGE_IN_A_URL
    )
    for op in ROUTED
}
STATUS = {200, 400, 404}
Sessions = async_sessionmaker[AsyncSession]


def as_text(value: Any) -> str:
    """A value as it would be written in a URL: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class App:
    portal: BlockingPortal
    http: httpx2.AsyncClient
    gate: AccountGate
    sessions: Sessions  # the app's database, opened beside it


@dataclass
class Rest:
    app: App
    account_pk: int
    key: str
    requests: int = 0

    def send(self, method: str, path: str, given: dict[str, Any]) -> httpx2.Response:
        """GET and DELETE carry the arguments as query parameters, a POST as its JSON body."""
        headers = {"Authorization": f"Bearer {self.key}"}
        http = self.app.http
        if method == "POST":
            body = json.dumps(given).encode()  # NaN and Infinity too: the server refuses them
            headers["Content-Type"] = "application/json"
            request = http.build_request(method, path, content=body, headers=headers)
        else:
            params = {str(k): as_text(v) for k, v in given.items()}
            request = http.build_request(method, path, params=params, headers=headers)
        response = self.app.portal.call(http.send, request)
        self.requests += 1
        return response

    def recorded(self) -> int:
        return self.app.portal.call(self._recorded)

    async def _recorded(self) -> int:
        await self.app.gate.meter.flush()
        async with self.app.sessions() as session:
            count = await session.scalar(
                select(func.count()).where(UsageRecord.chain == chain_of(self.account_pk))
            )
        return count or 0


@asynccontextmanager
async def app_serving(
    settings: Settings,
) -> AsyncIterator[tuple[httpx2.AsyncClient, AccountGate, Sessions]]:
    gate = AccountGate(settings)
    app = create_app(settings, build_server, gate=gate)
    async with app.router.lifespan_context(app), open_runtime(settings) as beside:
        transport = httpx2.ASGITransport(app=app, client=("198.51.100.23", 40000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, gate, beside.sessions


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with loaded_postgres() as loaded, start_blocking_portal() as portal:
        settings = loaded.with_changes(answers={"cache_ttl_s": 0})
        with portal.wrap_async_context_manager(app_serving(settings)) as (http, gate, sessions):
            yield App(portal, http, gate, sessions)


@pytest.fixture
def rest(app: App) -> Rest:
    """An enterprise key of its own for each route's examples."""
    account_pk, key = app.portal.call(new_key, app.sessions, Tier.ENTERPRISE)
    return Rest(app, account_pk, key)


def _path(template: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The route's path with its parameters filled in (percent-encoded), and the rest of the
    arguments. A path parameter that would leave the route ("", a slash, a dot segment) is
    replaced: the router answers those, not the operation."""
    rest = {str(k): v for k, v in given.items()}
    path = template
    for name in re.findall(r"\{(\w+)\}", template):
        value = as_text(rest.pop(name, "x")).replace("/", "_")
        path = path.replace(f"{{{name}}}", quote(value if value not in {"", ".", ".."} else "x"))
    return path, rest


@pytest.mark.parametrize("operation", ROUTED, ids=[op.name.value for op in ROUTED])
@settings(FUZZ, max_examples=EXAMPLES_PER_ROUTE)
@given(data=st.data())
def test_every_route_survives_hostile_parameters(
    rest: Rest,
    operation: Operation[Any, Any],
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:
    assert operation.rest is not None
    given_arguments = data.draw(STRATEGIES[operation.name.value], label="arguments")
    path, given = _path(operation.rest.path, given_arguments)
    response = rest.send(operation.rest.method, path, given)
    event(str(response.status_code))
    assert response.status_code in STATUS, response.text[:300]
    body = response.json()
    if response.status_code != 200:
        check_problem({"error": body["error"]["code"], "message": body["error"]["message"]})
    check_log(caplog)
    assert rest.recorded() == rest.requests

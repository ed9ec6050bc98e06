"""Every tool, fuzzed from the input schema it lists plus hostile mutations, over the SDK's
in-memory client, on the account gate and PostgreSQL (where a NUL in text used to crash a
tool). Each call must come back as an answer its output schema admits or as a one-line
``invalid_arguments`` / ``not_found`` problem; nothing may be logged at ERROR or with a
traceback; every call must be counted against the caller's limits and recorded by the meter,
exactly once. See tests/fuzzing.py for how it is bounded.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import event, given, settings
from hypothesis import strategies as st
from mcp import Client
from sqlalchemy import func, select

from kamiyo.access.account_gate import AccountGate
from kamiyo.access.meter import chain_of
from kamiyo.config import Settings
from kamiyo.db.usage import UsageRecord
from kamiyo.mcpserver.server import build_server
from kamiyo.mcpserver.tools import input_schema, output_schema
from kamiyo.runtime import Runtime, open_runtime
from kamiyo.service.catalogue import OPERATIONS, Operation
from kamiyo.service.state import ServerState
from kamiyo.tiers import TIERS, Tier
from tests.fuzzing import FUZZ, arguments, check_log, check_problem, loaded_postgres
from tests.mcpserver.test_invalid_calls import new_key
from tests.mcpserver.test_tools import text_of

EXAMPLES_PER_TOOL = 50  # each tool has an account of its own: under enterprise's 500 a minute
STRATEGIES = {op.name.value: arguments(input_schema(op, transfers=False)) for op in OPERATIONS}
VALIDATORS = {
    op.name.value: jsonschema.Draft202012Validator(output_schema(op, payments=False))
    for op in OPERATIONS
}


@dataclass
class Server:
    portal: BlockingPortal
    runtime: Runtime
    gate: AccountGate


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Runtime, AccountGate]]:
    async with open_runtime(settings) as runtime:
        gate = AccountGate(settings)
        async with gate.serving(runtime.sessions):
            yield runtime, gate


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with loaded_postgres() as loaded, start_blocking_portal() as portal:
        settings = loaded.with_changes(answers={"cache_ttl_s": 0})  # every call reaches PG
        with portal.wrap_async_context_manager(serving(settings)) as (runtime, gate):
            yield Server(portal, runtime, gate)


@dataclass
class Caller:
    """An enterprise account of its own (every tool unlocked), calling over MCP."""

    server: Server
    client: Client
    account_pk: int
    tools: dict[str, Any] = field(default_factory=dict)
    calls: int = 0

    def call(self, name: str, given: dict[str, Any]) -> Any:
        self.calls += 1
        return self.server.portal.call(self.client.call_tool, name, given)

    def recorded(self) -> int:
        """Usage records written for this caller, after writing what the meter holds."""
        return self.server.portal.call(self._recorded)

    async def _recorded(self) -> int:
        await self.server.gate.meter.flush()
        async with self.server.runtime.sessions() as session:
            count = await session.scalar(
                select(func.count()).where(UsageRecord.chain == chain_of(self.account_pk))
            )
        return count or 0

    def counted(self) -> int:
        """Requests in this caller's daily quota window (the minute's may roll over)."""
        usage = self.server.gate.limiter.usage
        windows = self.server.portal.call(
            usage, f"account:{self.account_pk}", TIERS[Tier.ENTERPRISE]
        )
        assert windows is not None
        return windows[1].used


@pytest.fixture
def caller(server: Server) -> Iterator[Caller]:
    account_pk, key = server.portal.call(new_key, server.runtime.sessions, Tier.ENTERPRISE)
    settings = server.runtime.settings
    state = ServerState(
        settings=settings, gate=server.gate, runtime=server.runtime, stdio_credential=key
    )
    with server.portal.wrap_async_context_manager(Client(build_server(state))) as client:
        listed = server.portal.call(client.list_tools)
        yield Caller(server, client, account_pk, {t.name: t.input_schema for t in listed.tools})


def test_every_tool_is_fuzzed_from_the_schema_it_lists(caller: Caller) -> None:
    assert caller.tools == {op.name.value: input_schema(op, False) for op in OPERATIONS}


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.name.value for op in OPERATIONS])
@settings(FUZZ, max_examples=EXAMPLES_PER_TOOL)
@given(data=st.data())
def test_every_tool_survives_hostile_arguments(
    caller: Caller,
    operation: Operation[Any, Any],
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
) -> None:
    name = operation.name.value
    result = caller.call(name, data.draw(STRATEGIES[name], label="arguments"))
    structured = result.structured_content
    assert structured is not None
    event(structured.get("error", "answer"))  # --hypothesis-show-statistics: what calls came to
    if result.is_error:
        check_problem(structured)
        assert structured["message"] == text_of(result)
    else:
        VALIDATORS[name].validate(structured)
    check_log(caplog)
    assert caller.recorded() == caller.calls
    assert caller.counted() == caller.calls

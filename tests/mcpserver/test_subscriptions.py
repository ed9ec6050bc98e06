"""Resource subscriptions through the SDK's own client, on both protocol eras: a change
published on the state's change bus reaches each subscribed session within a second, under the
URI it subscribed with, and only what its tier may see."""

import datetime as dt
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import SessionMessage
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    ResourceListChangedNotification,
    ResourceUpdatedNotification,
)

from kamiyo import intel
from kamiyo.access import keys, revocation
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Gate, OpenGate
from kamiyo.alerts.events import ChangeKind, IncidentChange
from kamiyo.db.engine import create_engine, session_factory
from kamiyo.mcpserver import subscriptions
from kamiyo.mcpserver.server import CatalogueServer, build_server
from kamiyo.mcpserver.subscribers import LIST_CHANGED_INTERVAL_S
from kamiyo.mcpserver.subscriptions import MAX_SUBSCRIPTIONS
from kamiyo.mcpserver.uris import RECENT_URI
from kamiyo.runtime import Runtime
from kamiyo.service.state import ServerState
from kamiyo.tiers import Tier
from tests.mcpserver.conftest import STATELESS, free_port, running_http_server, server_env
from tests.mcpserver.test_invalid_calls import new_key

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
ERAS = ["legacy", MODERN]
# A bound on waiting, not a speed claim: how fast sessions are told is measured in
# bench/alerts.py (a timed assertion would fail on a loaded machine, not on slow code).
WITHIN_S = 10.0
EULER = "20230313_eulerfinance"
# Other spellings of Euler's resources than the canonical ones (protocols/euler, chains/ethereum).
EULER_PROTOCOL = "kamiyo://protocols/Euler%20Finance/incidents"
ETHEREUM = "kamiyo://chains/Ethereum/incidents"


async def incident(runtime: Runtime, exploit_id: str = EULER) -> intel.Incident:
    async with runtime.sessions() as session:
        return await intel.exploit(session, intel.ExploitQuery(exploit_id=exploit_id))


def address_uri(incident: intel.Incident) -> str:
    """An address of the incident, spelled in upper case (EVM addresses are stored lower)."""
    address = next(fact.address for fact in incident.addresses if fact.address.startswith("0x"))
    return f"kamiyo://addresses/0x{address[2:].upper()}/incidents"


def fresh(incident: intel.Incident) -> intel.Incident:
    """A copy dated today, under an id of its own: newer than the free tier's delay."""
    today = dt.datetime.now(dt.UTC).date()
    return incident.model_copy(update={"id": f"{today:%Y%m%d}_fresh", "date": today})


class Inbox:
    """The resource notifications a handshake-era client receives, in order."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[str](100)

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self._send.send_nowait(message.params.uri)
        elif isinstance(message, ResourceListChangedNotification):
            self._send.send_nowait("list_changed")

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def next(self, within_s: float = WITHIN_S) -> str:
        with anyio.fail_after(within_s):
            return await self._receive.receive()

    async def within(self, wait_s: float) -> str | None:
        with anyio.move_on_after(wait_s):
            return await self._receive.receive()
        return None

    async def rest(self, client: Client, wait_s: float = 0.3) -> list[str]:
        """What else arrives: a request answered and a pause, so a notification owed has left."""
        await client.list_prompts()
        await anyio.sleep(wait_s)
        seen = []
        while True:
            try:
                seen.append(self._receive.receive_nowait())
            except anyio.WouldBlock:
                return seen


@asynccontextmanager
async def serving(
    runtime: Runtime,
    mode: str = "legacy",
    gate: Gate | None = None,
    credential: str | None = None,
) -> AsyncIterator[tuple[Client, ServerState, Inbox, CatalogueServer]]:
    settings = runtime.settings.with_changes(auth={"tier_cache_s": 0})
    gate = gate or OpenGate(settings.answers.max_results)
    state = ServerState(settings=settings, gate=gate, runtime=runtime, stdio_credential=credential)
    server = build_server(state)
    inbox = Inbox()
    try:
        async with (
            gate.serving(runtime.sessions),
            Client(server, mode=mode, message_handler=inbox) as c,
        ):
            yield c, state, inbox, server
    finally:
        inbox.close()


async def revoke(runtime: Runtime, key: str) -> None:
    async with runtime.sessions() as session:
        assert await keys.revoke_key(session, key[:17]) is not None
        await revocation.commit(session, runtime.settings)


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():  # the SDK marks the handshake era's methods deprecated
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.subscribe_resource(uri)


async def unsubscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.unsubscribe_resource(uri)


def resource_capabilities(client: Client) -> tuple[bool | None, bool | None]:
    """(subscribe, listChanged) as the server says: in the handshake, or at 2026-07-28 in
    ``server/discover`` (which only a client in mode "auto" asks)."""
    resources = client.server_capabilities.resources
    assert resources is not None
    return resources.subscribe, resources.list_changed


async def subscribe_on(client: Client, uris: list[str]) -> None:
    """Subscribe to ``uris`` as the client's era does: resources/subscribe, or a listen
    stream (opened, acknowledged, left)."""
    if client.protocol_version == MODERN:
        async with client.listen(resource_subscriptions=uris):
            return
    for uri in uris:
        await subscribe(client, uri)


def changed(incident: intel.Incident, kind: ChangeKind = ChangeKind.UPDATED) -> IncidentChange:
    return IncidentChange(change=kind, incident=incident)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_subscriptions_are_advertised(loaded_runtime: Runtime, mode: str) -> None:
    async with serving(loaded_runtime, mode) as (client, _, _, _):
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else MODERN)
        assert resource_capabilities(client) == (True, True)


async def test_a_session_is_told_under_the_uris_it_subscribed_with(
    loaded_runtime: Runtime,
) -> None:
    euler = await incident(loaded_runtime)
    asked = {RECENT_URI, EULER_PROTOCOL, ETHEREUM, address_uri(euler)}
    async with serving(loaded_runtime) as (client, state, inbox, _):
        for uri in asked:
            await subscribe(client, uri)
        await subscribe(client, "kamiyo://protocols/aave/incidents")  # not Euler's
        await state.changes.publish(changed(euler))
        told = {await inbox.next() for _ in asked}
        assert told == asked
        assert await inbox.rest(client) == []  # each once; an update adds no resource


async def test_an_unsubscribed_resource_is_not_told(loaded_runtime: Runtime) -> None:
    euler = await incident(loaded_runtime)
    async with serving(loaded_runtime) as (client, state, inbox, server):
        await subscribe(client, RECENT_URI)
        await subscribe(client, EULER_PROTOCOL)
        # Any spelling of the resource unsubscribes it.
        await unsubscribe(client, "kamiyo://protocols/euler/incidents")
        await unsubscribe(client, "kamiyo://chains/solana/incidents")  # never subscribed: fine
        await state.changes.publish(changed(euler))
        assert await inbox.next() == RECENT_URI
        assert await inbox.rest(client) == []
        await unsubscribe(client, RECENT_URI)
        await state.changes.publish(changed(euler))
        assert await inbox.rest(client) == []
        found = subscriptions.of(server)
        assert found is not None
        assert found.subscribers == 1
    # The session ended: nothing of it is kept.
    assert found.subscribers == 0


async def test_a_created_incident_changes_the_list_at_most_once_a_second(
    loaded_runtime: Runtime,
) -> None:
    euler = await incident(loaded_runtime)
    chain = "kamiyo://chains/ethereum/incidents"
    async with serving(loaded_runtime) as (client, state, inbox, _):
        await subscribe(client, chain)
        started = anyio.current_time()
        for n in range(3):  # three new incidents at once
            new = euler.model_copy(update={"id": f"20230313_new{n}"})
            await state.changes.publish(changed(new, ChangeKind.CREATED))
        # The first is told at once; the chain's resource is owed once, however often touched.
        assert sorted([await inbox.next(), await inbox.next()]) == [chain, "list_changed"]
        # The two others come in one list_changed, at the end of the second.
        assert await inbox.next(within_s=2 * WITHIN_S) == "list_changed"
        assert anyio.current_time() - started >= LIST_CHANGED_INTERVAL_S - 0.05
        assert await inbox.rest(client) == []


async def test_the_free_tier_is_not_told_of_an_incident_within_its_delay(
    loaded_runtime: Runtime,
) -> None:
    euler = await incident(loaded_runtime)
    new = fresh(euler)
    uris = [f"kamiyo://exploits/{new.id}", f"kamiyo://exploits/{euler.id}"]
    gate = AccountGate(loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0}))
    async with serving(loaded_runtime, gate=gate) as (anonymous, state, inbox, _):  # free tier
        for uri in uris:
            await subscribe(anonymous, uri)
        await state.changes.publish(changed(new, ChangeKind.CREATED))
        await state.changes.publish(changed(euler))
        assert await inbox.next() == uris[1]  # the old one; the fresh one never
        assert await inbox.rest(anonymous) == []
    _, key = await new_key(loaded_runtime.sessions, Tier.PERSONAL)
    gate = AccountGate(loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0}))
    async with serving(loaded_runtime, gate=gate, credential=key) as (paid, state, inbox, _):
        await subscribe(paid, uris[0])
        await state.changes.publish(changed(new, ChangeKind.CREATED))
        assert sorted([await inbox.next(), await inbox.next()]) == [uris[0], "list_changed"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_uri_that_names_no_resource_is_refused(loaded_runtime: Runtime, mode: str) -> None:
    async with serving(loaded_runtime, mode) as (client, _, _, _):
        for uri in ["test://watched-resource", "kamiyo://chains/nowhere/incidents", "k" * 300]:
            with pytest.raises(MCPError) as refused:
                await subscribe_on(client, [RECENT_URI, uri])
            assert refused.value.error.code == INVALID_PARAMS
            assert "Subscribable: kamiyo://exploits/recent" in refused.value.error.message
            assert len(refused.value.error.message) < 450  # a long URI is said back in part


@pytest.mark.parametrize("mode", ERAS)
async def test_a_credential_the_gate_refuses_cannot_subscribe(
    loaded_runtime: Runtime, mode: str
) -> None:
    gate = AccountGate(loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0}))
    unknown = "kmy_live_" + "b" * 43
    async with serving(loaded_runtime, mode, gate, unknown) as (client, _, _, _):
        with pytest.raises(MCPError) as refused:
            await subscribe_on(client, [RECENT_URI])
    assert refused.value.error.code == INVALID_REQUEST
    assert refused.value.error.message == "Unknown or revoked API key."
    assert refused.value.error.data == {"reason": "unauthenticated"}


async def test_a_session_whose_key_is_revoked_is_told_no_more(loaded_runtime: Runtime) -> None:
    euler = await incident(loaded_runtime)
    _, key = await new_key(loaded_runtime.sessions, Tier.PERSONAL)
    gate = AccountGate(loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0}))
    async with serving(loaded_runtime, gate=gate, credential=key) as (client, state, inbox, server):
        found = subscriptions.of(server)
        assert found is not None
        await subscribe(client, RECENT_URI)
        await revoke(loaded_runtime, key)
        # That change is judged by the standing known until then; it has the key checked.
        await state.changes.publish(changed(euler))
        assert await inbox.next() == RECENT_URI
        assert await inbox.rest(client) == []  # a moment for the check
        assert found.subscribers == 0
        await state.changes.publish(changed(euler))
        assert await inbox.rest(client) == []
        with pytest.raises(MCPError) as refused:
            await subscribe(client, RECENT_URI)
        assert refused.value.error.message == "Unknown or revoked API key."


async def test_a_listen_stream_whose_key_is_revoked_is_closed(loaded_runtime: Runtime) -> None:
    euler = await incident(loaded_runtime)
    _, key = await new_key(loaded_runtime.sessions, Tier.PERSONAL)
    gate = AccountGate(loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0}))
    async with (
        serving(loaded_runtime, MODERN, gate, key) as (client, state, _, _),
        client.listen(resource_subscriptions=[RECENT_URI]) as sub,
    ):
        await revoke(loaded_runtime, key)
        await state.changes.publish(changed(euler))
        with anyio.fail_after(WITHIN_S):
            told = [event async for event in sub]  # ends gracefully once the key is checked
        assert told == [ResourceUpdated(RECENT_URI)]


async def test_a_client_that_stops_reading_costs_a_bounded_backlog(
    loaded_runtime: Runtime,
) -> None:
    """The server's own loop on a pair of streams, and a client that stops reading them."""
    euler = await incident(loaded_runtime)
    settings = loaded_runtime.settings
    state = ServerState(settings=settings, gate=OpenGate(10), runtime=loaded_runtime)
    lowlevel = build_server(state)._lowlevel_server
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](1)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](1)

    async def ask(n: int, method: str, params: dict[str, Any]) -> None:
        await to_server.send(
            SessionMessage(JSONRPCRequest(jsonrpc="2.0", id=n, method=method, params=params))
        )
        while not isinstance((await from_server.receive()).message, JSONRPCResponse):
            pass

    async with anyio.create_task_group() as tasks, to_server, from_server:
        options = lowlevel.create_initialization_options()
        tasks.start_soon(lowlevel.run, server_reads, server_writes, options)
        hello = {"name": "stuck", "version": "0"}
        await ask(
            1,
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": hello},
        )
        await to_server.send(
            SessionMessage(JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"))
        )
        await ask(2, "resources/subscribe", {"uri": RECENT_URI})
        await ask(3, "resources/subscribe", {"uri": EULER_PROTOCOL})
        for n in range(500):  # the client reads nothing meanwhile
            await state.changes.publish(changed(euler.model_copy(update={"id": f"x{n}"})))
            await anyio.lowlevel.checkpoint()  # the sender runs, and blocks on the client
        told = []
        with anyio.move_on_after(0.5):
            async for message in from_server:
                assert isinstance(message.message, JSONRPCNotification)
                told.append((message.message.params or {})["uri"])
        tasks.cancel_scope.cancel()
    # What waited was each subscribed URI once (plus what the stream held), not 1,000.
    assert set(told) == {RECENT_URI, EULER_PROTOCOL}
    assert len(told) <= 4


async def test_a_gate_that_cannot_answer_refuses_for_now(
    loaded_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """The gate's database unreachable: a temporary refusal and one outage line, no traceback."""
    settings = loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0})
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone")
    gate = AccountGate(settings)
    key = "kmy_live_" + "c" * 43
    state = ServerState(settings=settings, gate=gate, runtime=loaded_runtime, stdio_credential=key)
    try:
        async with (
            gate.serving(session_factory(engine)),
            Client(build_server(state), mode="legacy") as client,
        ):
            with pytest.raises(MCPError) as refused:
                await subscribe(client, RECENT_URI)
    finally:
        await engine.dispose()
    assert refused.value.error.code == INTERNAL_ERROR
    assert refused.value.error.message == (
        "resources/subscribe is temporarily unavailable; try again shortly."
    )
    assert not any(record.exc_info for record in caplog.records)


async def test_a_listen_stream_holds_a_bounded_number_of_subscriptions(
    loaded_runtime: Runtime,
) -> None:
    async with serving(loaded_runtime, MODERN) as (client, _, _, _):
        wanted = [f"kamiyo://exploits/x{n}" for n in range(MAX_SUBSCRIPTIONS + 1)]
        with pytest.raises(MCPError) as refused:
            await subscribe_on(client, wanted)
        assert refused.value.error.code == INVALID_PARAMS
        assert f"at most {MAX_SUBSCRIPTIONS} resource subscriptions" in refused.value.error.message
        await subscribe_on(client, wanted[:MAX_SUBSCRIPTIONS])


def test_a_stateless_server_refuses_resources_subscribe(tmp_path: Path) -> None:
    """Over real HTTP: a stateful server takes the subscription, a stateless one says why it
    cannot (it has no session to send on)."""

    async def subscribe_over_http(url: str) -> MCPError | None:
        async with Client(f"{url}/mcp", mode="legacy") as client:
            try:
                await subscribe(client, EULER_PROTOCOL)
            except MCPError as exc:
                return exc
            return None

    with running_http_server(tmp_path, [], log_name="stateful.log") as url:
        assert anyio.run(subscribe_over_http, url) is None
    with running_http_server(tmp_path, STATELESS, log_name="stateless.log") as url:
        refused = anyio.run(subscribe_over_http, url)
    assert refused is not None
    assert refused.error.code == INVALID_REQUEST
    assert "no session to send notifications on" in refused.error.message


async def test_a_session_holds_a_bounded_number_of_subscriptions(loaded_runtime: Runtime) -> None:
    async with serving(loaded_runtime) as (client, _, _, _):
        for n in range(MAX_SUBSCRIPTIONS):
            await subscribe(client, f"kamiyo://exploits/x{n}")
        await subscribe(client, "kamiyo://exploits/x0")  # again: no new subscription
        with pytest.raises(MCPError) as refused:
            await subscribe(client, RECENT_URI)
        assert refused.value.error.code == INVALID_REQUEST
        assert f"at most {MAX_SUBSCRIPTIONS} resource subscriptions" in refused.value.error.message
        await unsubscribe(client, "kamiyo://exploits/x0")
        await subscribe(client, RECENT_URI)


async def test_a_listen_stream_is_acknowledged_told_and_closed_gracefully(
    loaded_runtime: Runtime,
) -> None:
    euler = await incident(loaded_runtime)
    asked = [EULER_PROTOCOL, ETHEREUM, address_uri(euler), "kamiyo://protocols/aave/incidents"]
    async with (
        serving(loaded_runtime, MODERN) as (client, state, _, server),
        client.listen(resource_subscriptions=asked, resources_list_changed=True) as sub,
    ):
        assert sub.honored.resource_subscriptions == asked  # the ack says what was asked
        assert sub.honored.resources_list_changed is True
        await state.changes.publish(changed(euler))
        with anyio.fail_after(WITHIN_S):
            told = {await anext(sub) for _ in range(3)}
        assert told == {ResourceUpdated(uri) for uri in asked[:3]}
        new = euler.model_copy(update={"id": "20230313_new"})
        await state.changes.publish(changed(new, ChangeKind.CREATED))
        with anyio.fail_after(WITHIN_S):
            told = {await anext(sub) for _ in range(4)}
        assert ResourcesListChanged() in told
        found = subscriptions.of(server)
        assert found is not None
        found.close()  # what a shutdown does: each stream ends with its result
        with anyio.fail_after(WITHIN_S):
            rest = [event async for event in sub]  # ends, rather than raising Lost
        assert rest == []
        assert found.subscribers == 0  # the stream's view left with it


async def test_a_free_listen_stream_is_not_told_of_an_incident_within_its_delay(
    loaded_runtime: Runtime,
) -> None:
    euler = await incident(loaded_runtime)
    new = fresh(euler)
    uris = [f"kamiyo://exploits/{new.id}", f"kamiyo://exploits/{euler.id}"]
    gate = AccountGate(loaded_runtime.settings.with_changes(auth={"tier_cache_s": 0}))
    async with (
        serving(loaded_runtime, MODERN, gate) as (client, state, _, _),  # anonymous: free
        client.listen(resource_subscriptions=uris, resources_list_changed=True) as sub,
    ):
        await state.changes.publish(changed(new, ChangeKind.CREATED))
        await state.changes.publish(changed(euler))
        with anyio.fail_after(WITHIN_S):
            assert await anext(sub) == ResourceUpdated(uris[1])  # not the fresh one, nor a list


@asynccontextmanager
async def over_http(server: CatalogueServer) -> AsyncIterator[str]:
    """``server`` on Streamable HTTP on a loopback port, in this event loop (so the change bus
    and the connections share it, as in ``kamiyo serve``); yields its /mcp URL."""
    app = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    port = free_port()
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(web.serve)
        with anyio.fail_after(30):
            while not web.started:  # noqa: ASYNC110 (uvicorn says so by a flag only)
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            web.should_exit = True


@pytest.mark.parametrize("mode", ERAS)
async def test_a_session_over_streamable_http_is_told(loaded_runtime: Runtime, mode: str) -> None:
    euler = await incident(loaded_runtime)
    settings = loaded_runtime.settings
    state = ServerState(settings=settings, gate=OpenGate(10), runtime=loaded_runtime)
    inbox = Inbox()
    try:
        async with (
            over_http(build_server(state)) as url,
            Client(url, mode=mode, message_handler=inbox) as client,
        ):
            if mode == MODERN:
                async with client.listen(resource_subscriptions=[EULER_PROTOCOL]) as sub:
                    await state.changes.publish(changed(euler))
                    with anyio.fail_after(WITHIN_S):
                        assert await anext(sub) == ResourceUpdated(EULER_PROTOCOL)
            else:
                # Told on the session's GET stream, which the client opens on its own after
                # the handshake (a notification before it is up has nowhere to go): wait.
                await subscribe(client, RECENT_URI)
                with anyio.fail_after(30):
                    while await inbox.within(0.1) is None:
                        await state.changes.publish(changed(euler))
                await subscribe(client, EULER_PROTOCOL)
                await inbox.rest(client)
                await state.changes.publish(changed(euler))
                assert {await inbox.next(), await inbox.next()} == {RECENT_URI, EULER_PROTOCOL}
    finally:
        inbox.close()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_subscriptions(tmp_path: Path, mode: str) -> None:
    """``kamiyo serve`` in its own process: advertised, and a round trip on each era. (What
    publishes changes there is the alerts worker; the in-memory tests above cover delivery.)"""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kamiyo", "serve"],
        env=server_env(tmp_path),
        cwd=tmp_path,
    )
    async with Client(params, mode=mode) as client:
        assert resource_capabilities(client) == (True, True)
        if mode == "auto":
            assert client.protocol_version == MODERN
            async with client.listen(resource_subscriptions=[EULER_PROTOCOL]) as sub:
                assert sub.honored.resource_subscriptions == [EULER_PROTOCOL]
        else:
            await subscribe(client, EULER_PROTOCOL)
            await unsubscribe(client, EULER_PROTOCOL)
            with pytest.raises(MCPError) as refused:
                await subscribe(client, "test://watched-resource")
            assert refused.value.error.code == INVALID_PARAMS

"""Resource subscriptions on both protocol eras, fed by the alerts worker's change bus.

Up to 2025-11-25 a client sends ``resources/subscribe {uri}`` and is told
``notifications/resources/updated {uri}`` on its session's standalone channel, under the URI it
subscribed with, plus ``notifications/resources/list_changed`` (at most once a second, changes
in between coalesced) when an incident is created, since that adds a resource
(``kamiyo://exploits/<id>``); that goes to sessions holding a subscription, the ones whose
caller (and so delay) the server knows. At 2026-07-28 a client opens
``subscriptions/listen``; the SDK's ``ListenHandler`` serves each stream (acknowledgement
first, filters, graceful close), on a per-stream view of the changes that re-spells canonical
URIs as the client's.

Rules, the same on both eras:

- A subscription passes the gate: the caller's credential must be one that may read the
  resource (today any credential the gate identifies may read every resource). A refused
  credential gets the gate's sentence as a JSON-RPC error (-32600, ``data.reason`` says why); a
  URI that names no resource of ours, or is over ``MAX_URI``, gets -32602. The check is
  ``Gate.identify``, not ``admit``: subscribing is not metered or counted against rate limits,
  and no notification is. Reading what a notification names is a read like any other.
- A tier with a data delay (free: ``TIERS[Tier.FREE].data_delay_hours``) is not told of a
  change to an incident newer than the cutoff its reads have (a real-time tier is told at
  once). Such an incident is never announced to that session later either: it shows up in
  its reads once old enough.
- The credential is checked again when a change comes ``tier_cache_s`` or more after the last
  check (in the background: that change is judged by the standing known until then). A
  revoked credential or disabled account ends the subscriptions (a listen stream closes
  gracefully; the client listens again and is refused); a new tier applies from then on. A
  session's latest subscribe decides its credential. Notifications carry URIs only; every
  read of one is gated again.
- ``kamiyo://alerts/<id>`` is one account's alert rule: only a credential of that account may
  subscribe to it (another's rule id is "no such rule", as in list_alerts), and its sessions
  are told when the rule matches a new incident (the alerts worker's ``AlertMatch``).
- At most ``MAX_SUBSCRIPTIONS`` URIs per session, and per listen stream.
- A stateless HTTP server has no session to send on: ``resources/subscribe`` is refused there
  with a sentence saying so.
"""

import logging
from typing import Any
from weakref import WeakKeyDictionary

from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from kamiyo.access.gate import Refusal
from kamiyo.alerts import manage
from kamiyo.intel.scope import NotFoundError
from kamiyo.mcpserver import uris
from kamiyo.mcpserver.bounds import MAX_URI, shown, too_long
from kamiyo.mcpserver.subscribers import (
    Hub,
    SessionSubscriber,
    Spellings,
    StreamView,
    Viewer,
    gate_failed,
)
from kamiyo.mcpserver.tools import credential_of
from kamiyo.service.state import ServerState

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 100  # resource URIs per session, and per listen stream
MAX_LISTEN_STREAMS = 1024  # open listen streams per server (the SDK's default)
# Events waiting for one listen stream's client; a stream that falls this far behind is ended
# (the client listens again and reads again: the SDK replays nothing).
MAX_BUFFERED_EVENTS = 256

SUBSCRIBABLE = ", ".join(
    [
        uris.RECENT_URI,
        uris.EXPLOIT_TEMPLATE,
        uris.PROTOCOL_TEMPLATE,
        uris.CHAIN_TEMPLATE,
        uris.ADDRESS_TEMPLATE,
        uris.ALERT_TEMPLATE,
    ]
)


_REGISTERED: WeakKeyDictionary[MCPServer, "Subscriptions"] = WeakKeyDictionary()


def register(server: MCPServer, state: ServerState) -> "Subscriptions":
    """Serve subscriptions on ``server`` (built with ``subscriptions=False``, so the SDK's own
    listen handler, which knows nothing of callers, is not installed) from ``state.changes``."""
    subscriptions = Subscriptions(state)
    lowlevel = server._lowlevel_server
    # The capability resources.subscribe (both eras) derives from these handlers being here.
    lowlevel.add_request_handler(
        "resources/subscribe", SubscribeRequestParams, subscriptions.subscribe
    )
    lowlevel.add_request_handler(
        "resources/unsubscribe", UnsubscribeRequestParams, subscriptions.unsubscribe
    )
    lowlevel.add_request_handler(
        "subscriptions/listen", SubscriptionsListenRequestParams, subscriptions.listen
    )
    server.middleware.append(advertise_list_changed)
    _REGISTERED[server] = subscriptions
    state.on_shutdown.append(subscriptions.close)  # listen streams end gracefully
    return subscriptions


def of(server: MCPServer) -> "Subscriptions | None":
    """The subscriptions ``register`` put on ``server``."""
    return _REGISTERED.get(server)


async def advertise_list_changed(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Say ``resources.listChanged`` in the handshake-era ``initialize`` result: the SDK
    derives it there only from options ``MCPServer`` does not take (at 2026-07-28 it derives
    it from the listen handler)."""
    result = await call_next(ctx)
    if ctx.method == "initialize" and isinstance(result, dict):
        resources = result.get("capabilities", {}).get("resources")
        if isinstance(resources, dict):
            resources["listChanged"] = True
    return result


class Subscriptions:
    """One server's subscriptions: the request handlers of both eras, and the hub that hears
    ``state.changes`` for them. Holds nothing of the server (``of`` finds it by server)."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._hub = Hub()
        # One entry per handshake-era client connection, dropped when the connection ends.
        self._sessions: WeakKeyDictionary[Connection, SessionSubscriber] = WeakKeyDictionary()
        self._streams: set[ListenHandler] = set()
        self._leave_changes = state.changes.subscribe(self._hub.hear)

    @property
    def subscribers(self) -> int:
        """Sessions and listen streams being told of changes now."""
        return len(self._hub)

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        method = "resources/subscribe"
        ref = _resource(method, params.uri)
        viewer = await self._viewer(ctx, method)
        await self._check_owner(viewer, ref, method)
        connection = _connection_of(ctx)
        if not connection.has_standalone_channel:
            log.info("%s refused: stateless server", method)
            raise MCPError(
                INVALID_REQUEST,
                "This server answers each HTTP request on its own (stateless), so it has no "
                "session to send notifications on; subscribe on a stateful server, or use "
                "subscriptions/listen (protocol 2026-07-28).",
            )
        subscriber = self._sessions.get(connection)
        if subscriber is None or subscriber.closed:
            subscriber = self._session_subscriber(connection, viewer)
        subscriber.viewer = viewer
        if params.uri not in subscriber.uris and len(subscriber.uris) >= MAX_SUBSCRIPTIONS:
            log.info("%s refused: %d subscriptions", method, MAX_SUBSCRIPTIONS)
            raise MCPError(
                INVALID_REQUEST,
                f"A session holds at most {MAX_SUBSCRIPTIONS} resource subscriptions; "
                "unsubscribe from one first.",
                data={"uri": shown(params.uri), "limit": MAX_SUBSCRIPTIONS},
            )
        subscriber.uris.add(ref, params.uri)
        return EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        """Forget the resource, under any spelling; one never subscribed to is no error."""
        ref = _resource("resources/unsubscribe", params.uri)
        subscriber = self._sessions.get(_connection_of(ctx))
        if subscriber is not None:
            subscriber.uris.remove(ref)
        return EmptyResult()

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        method = "subscriptions/listen"
        wanted = params.notifications.resource_subscriptions or []
        if len(wanted) > MAX_SUBSCRIPTIONS:
            log.info("%s refused: %d resource subscriptions", method, len(wanted))
            raise MCPError(
                INVALID_PARAMS,
                f"A listen stream holds at most {MAX_SUBSCRIPTIONS} resource subscriptions; "
                f"this one asks for {len(wanted)}.",
                data={"limit": MAX_SUBSCRIPTIONS},
            )
        spellings = Spellings()
        for uri in wanted:
            spellings.add(_resource(method, uri), uri)
        viewer = await self._viewer(ctx, method)
        for ref in spellings.refs():
            await self._check_owner(viewer, ref, method)
        if len(self._streams) >= MAX_LISTEN_STREAMS:
            log.warning("%s refused: %d streams open", method, MAX_LISTEN_STREAMS)
            raise MCPError(
                INTERNAL_ERROR, "All the listen streams this server holds are open; retry."
            )
        list_changed = params.notifications.resources_list_changed is True
        view = StreamView(self._hub, viewer, spellings, list_changed)
        # One SDK handler per stream, so that each stream has its caller's view; it
        # acknowledges (echoing the filter as asked), delivers, and closes gracefully.
        handler = ListenHandler(view, max_subscriptions=1, max_buffered_events=MAX_BUFFERED_EVENTS)
        view.end = handler.close
        self._streams.add(handler)
        try:
            return await handler(ctx, params)
        finally:
            self._streams.discard(handler)

    def close(self) -> None:
        """Stop hearing the change bus and end every listen stream gracefully (each sends its
        final result); sessions are told nothing more."""
        self._leave_changes()
        for handler in list(self._streams):
            handler.close()
        for subscriber in list(self._sessions.values()):
            subscriber.close()

    def _session_subscriber(self, connection: Connection, viewer: Viewer) -> SessionSubscriber:
        subscriber = SessionSubscriber(self._hub, connection, viewer)
        self._sessions[connection] = subscriber

        def ended() -> None:  # the connection's own teardown, when its client goes
            subscriber.close()
            self._sessions.pop(connection, None)

        connection.exit_stack.callback(ended)
        return subscriber

    async def _viewer(self, ctx: ServerRequestContext[Any, Any], method: str) -> Viewer:
        """Who the caller is, as the gate says; refused as the gate refuses. Any caller the
        gate admits may read every resource (content.py's reads name no tier), so a credential
        it identifies may subscribe to any."""
        credential = credential_of(Context(request_context=ctx), self._state)
        gate = self._state.gate
        try:
            identity = await gate.identify(credential)
        except Exception as exc:
            gate_failed(exc, method)
            raise MCPError(
                INTERNAL_ERROR, f"{method} is temporarily unavailable; try again shortly."
            ) from None
        if isinstance(identity, Refusal):
            log.info("%s refused: %s", method, identity.reason.value)
            data = {"reason": identity.reason.value, **identity.details()}
            raise MCPError(INVALID_REQUEST, identity.message, data=data)
        recheck_s = self._state.settings.auth.tier_cache_s
        return Viewer(gate, credential, identity.tier, recheck_s, identity.account_pk)

    async def _check_owner(self, viewer: Viewer, ref: uris.ResourceRef, method: str) -> None:
        """An alert rule's resource is its account's only: refused as unknown to anyone else."""
        if ref.kind is not uris.Kind.ALERT:
            return
        if viewer.account_pk is None:
            log.info("%s refused: an alert rule's resource without an account", method)
            raise MCPError(
                INVALID_REQUEST,
                "Alert rules belong to accounts: subscribe with the API key of the account "
                "that made the rule.",
                data={"uri": ref.uri},
            )
        owner = manage.Owner(account_pk=viewer.account_pk)
        try:
            async with self._state.require_runtime().sessions() as session:
                await manage.owned(session, owner, ref.key)
        except NotFoundError as exc:
            log.info("%s refused: not the caller's alert rule", method)
            raise MCPError(INVALID_PARAMS, str(exc), data={"uri": ref.uri}) from None
        except Exception as exc:
            gate_failed(exc, method)
            raise MCPError(
                INTERNAL_ERROR, f"{method} is temporarily unavailable; try again shortly."
            ) from None


def _resource(method: str, uri: str) -> uris.ResourceRef:
    """The resource ``uri`` names, or the caller's error: too long, or not ours."""
    problem = too_long("Resource URIs", uri, MAX_URI)
    ref = None if problem else uris.parse(uri)
    if ref is None:
        log.info("%s refused: %s", method, "URI too long" if problem else "unknown URI")
        message = problem or f"No resource of this server has the URI {shown(uri)}"
        raise MCPError(
            INVALID_PARAMS, f"{message}. Subscribable: {SUBSCRIBABLE}.", data={"uri": shown(uri)}
        )
    return ref


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The client connection a request came on (one per stdio process or HTTP session),
    which subscriptions belong to. The SDK makes a ``ServerSession`` per request and names
    the connection only through it."""
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise RuntimeError("the SDK's ServerSession no longer names its connection")
    return connection

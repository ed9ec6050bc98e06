"""Who hears of an incident change, and how it reaches them, on both protocol eras.

The change bus calls ``Hub.hear`` synchronously, in the publisher's task; nothing here awaits
there. A handshake-era session (``SessionSubscriber``) owes its client a set of URIs, each at
most once however many changes touch it before it is sent (an update is a level trigger: "read
it again"), so what waits for a slow or stuck client is bounded by its subscription cap; one
task per session sends them on the connection's standalone channel. A 2026-07-28 listen stream
(``StreamView``) hands events to the SDK's ``ListenHandler``, whose buffer is bounded and which
ends a stream that stops reading.

Subscribers are told under the URIs they subscribed with (a client may spell a protocol
"Euler Finance" where the canonical key is ``euler``), and only of incidents their tier may
see: a delayed tier is not told of an incident newer than its delay, then or later. A rule's
match (``kamiyo://alerts/<id>``) is told only to sessions of the rule's account.
"""

import asyncio
import datetime as dt
import logging
import math
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from mcp.server.connection import Connection
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent

from kamiyo import intel, outages
from kamiyo.access.gate import Gate, Refusal
from kamiyo.alerts.bus import Event
from kamiyo.alerts.events import AlertMatch, IncidentChange
from kamiyo.intel.scope import Scope
from kamiyo.mcpserver.uris import ResourceRef, alert_ref, refs_of
from kamiyo.tiers import TIERS, Tier

log = logging.getLogger(__name__)

# notifications/resources/list_changed goes to one subscriber at most this often; changes in
# between are told in one notification at the end of the interval.
LIST_CHANGED_INTERVAL_S = 1.0


class Viewer:
    """A subscriber's caller as the gate knows them, and so what it may be told: incidents
    its tier may read. Checked again, in the background, when a change comes more than
    ``recheck_s`` after the last check (the gate's own ``tier_cache_s``): a revoked credential
    or a disabled account ends the subscription, a new tier applies from then on."""

    def __init__(
        self,
        gate: Gate,
        credential: str | None,
        tier: Tier,
        recheck_s: float,
        account_pk: int | None = None,
    ) -> None:
        self._gate = gate
        self.account_pk = account_pk
        self._credential = credential  # held for the checks; never logged
        self._recheck_s = recheck_s
        self._checked = time.monotonic()
        self._checking: asyncio.Task[None] | None = None
        self._set(tier)

    def _set(self, tier: Tier) -> None:
        self.tier = tier
        self._policy = TIERS[tier]

    def hides(self, incident: intel.Incident) -> bool:
        # The cutoff the gate gives this tier's reads, taken now.
        cutoff = self._policy.hide_after(dt.datetime.now(dt.UTC))
        return cutoff is not None and Scope(hide_after=cutoff).hides(incident.date)

    def may_hear(self, event: Event) -> bool:
        """An incident its tier may see; a match of one of its own account's rules."""
        if isinstance(event, AlertMatch):
            return self.account_pk is not None and event.account_pk == self.account_pk
        return not self.hides(event.incident)

    def recheck_if_due(self, refused: Callable[[], None]) -> None:
        """Ask the gate again if the last answer is old; ``refused`` ends the subscription."""
        if self._checking is None and time.monotonic() - self._checked >= self._recheck_s:
            self._checking = asyncio.get_running_loop().create_task(self._recheck(refused))

    def cancel(self) -> None:
        if self._checking is not None:
            self._checking.cancel()

    async def _recheck(self, refused: Callable[[], None]) -> None:
        try:
            identity = await self._gate.identify(self._credential)
        except Exception as exc:  # the standing stays as it was; the next change asks again
            gate_failed(exc, "a subscription's check")
            return
        finally:
            self._checked = time.monotonic()
            self._checking = None
        if isinstance(identity, Refusal):
            log.info("subscription ended: %s", identity.reason.value)
            refused()
        else:
            self._set(identity.tier)


def gate_failed(exc: Exception, what: str) -> None:
    """Log a gate that could not answer: an unreachable database is one outage, no traceback."""
    if outages.is_unreachable(exc):
        outages.DATABASE.failed(exc)
    else:
        log.exception("gate failed for %s", what)


class Spellings:
    """The URIs a subscriber asked for, as it spelled them, by the resource each names."""

    def __init__(self) -> None:
        self._by_ref: dict[ResourceRef, dict[str, None]] = {}

    def __len__(self) -> int:
        return sum(len(spellings) for spellings in self._by_ref.values())

    def __contains__(self, uri: str) -> bool:
        return any(uri in spellings for spellings in self._by_ref.values())

    def add(self, ref: ResourceRef, uri: str) -> None:
        self._by_ref.setdefault(ref, {})[uri] = None

    def remove(self, ref: ResourceRef) -> None:
        """Forget every spelling of ``ref`` (a client may unsubscribe with another one)."""
        self._by_ref.pop(ref, None)

    def refs(self) -> list[ResourceRef]:
        return list(self._by_ref)

    def matching(self, refs: set[ResourceRef]) -> list[str]:
        """The subscriber's URIs for the resources in ``refs``."""
        return [uri for ref in refs & self._by_ref.keys() for uri in self._by_ref[ref]]


class Subscriber(Protocol):
    def hear(self, event: Event, refs: set[ResourceRef]) -> None:
        """Take note of ``event`` (touching ``refs``); synchronous, must not block."""
        ...


class Hub:
    """The change bus's one listener on this server: tells every subscriber of each change."""

    def __init__(self) -> None:
        self._subscribers: dict[Subscriber, None] = {}

    def __len__(self) -> int:
        return len(self._subscribers)

    def add(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers[subscriber] = None

        def remove() -> None:
            self._subscribers.pop(subscriber, None)

        return remove

    def hear(self, event: Event) -> None:
        if isinstance(event, IncidentChange):
            refs = refs_of(event.incident)
        else:
            refs = {alert_ref(event.alert_id)}
        for subscriber in list(self._subscribers):
            try:
                subscriber.hear(event, refs)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("a subscriber failed to take a change")


class Pacer:
    """Calls ``emit`` at once when asked, then at most once per interval: asks in between are
    coalesced into one call at the end of the interval (so the last change is never lost)."""

    def __init__(self, emit: Callable[[], None], interval_s: float = LIST_CHANGED_INTERVAL_S):
        self._emit = emit
        self._interval_s = interval_s
        self._last = -math.inf
        self._timer: asyncio.TimerHandle | None = None

    def ask(self) -> None:
        if self._timer is not None:
            return  # already owed at the end of this interval
        wait = self._last + self._interval_s - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._last = time.monotonic()
        self._emit()


class SessionSubscriber:
    """A handshake-era client connection: its resources/subscribe URIs and what it is owed.
    It hears the hub from creation until ``close`` (its connection ended, or the gate refused
    its caller on a later check)."""

    def __init__(self, hub: Hub, connection: Connection, viewer: Viewer) -> None:
        # Weak: the registry is keyed by the connection and must not keep it alive.
        self._connection = weakref.ref(connection)
        self._viewer = viewer
        self.uris = Spellings()
        self._owed: dict[str, None] = {}  # URIs to announce, each once, in order
        self._list_changed_owed = False
        self._pacer = Pacer(self._owe_list_changed)
        self._sending: asyncio.Task[None] | None = None
        self.closed = False
        self._leave = hub.add(self)

    @property
    def viewer(self) -> Viewer:
        return self._viewer

    @viewer.setter
    def viewer(self, viewer: Viewer) -> None:
        """The caller's latest subscribe decides what the session is told."""
        if viewer is not self._viewer:
            self._viewer.cancel()
            self._viewer = viewer

    def hear(self, event: Event, refs: set[ResourceRef]) -> None:
        self._viewer.recheck_if_due(self.close)
        if not self._viewer.may_hear(event):
            return
        self._owed.update(dict.fromkeys(self.uris.matching(refs)))
        if event.adds_resource:
            self._pacer.ask()
        self._send_soon()

    def close(self) -> None:
        self.closed = True
        self._leave()
        self._viewer.cancel()
        self._pacer.cancel()
        if self._sending is not None:
            self._sending.cancel()
        self._owed.clear()
        self.uris = Spellings()

    def _owe_list_changed(self) -> None:
        self._list_changed_owed = True
        self._send_soon()

    def _send_soon(self) -> None:
        if self._sending is None and (self._owed or self._list_changed_owed):
            self._sending = asyncio.get_running_loop().create_task(self._send_owed())

    async def _send_owed(self) -> None:
        """Send what is owed until nothing is; a change heard meanwhile joins the queue."""
        try:
            while (connection := self._connection()) is not None:
                if self._list_changed_owed:
                    self._list_changed_owed = False
                    await connection.send_resource_list_changed()
                elif self._owed:
                    uri = next(iter(self._owed))
                    del self._owed[uri]
                    await connection.send_resource_updated(uri)
                else:
                    break
                del connection  # a connection that closed meanwhile may go
        finally:
            self._sending = None
        if self._connection() is None:  # gone without its teardown: nothing to keep
            self.close()


class StreamView:
    """A 2026-07-28 listen stream's view of the hub, in the shape of the SDK's
    ``SubscriptionBus``: the ``ListenHandler`` serving the stream subscribes to it and hears
    the changes its caller may be told of, under the caller's spellings."""

    def __init__(self, hub: Hub, viewer: Viewer, uris: Spellings, list_changed: bool) -> None:
        self._hub = hub
        self._viewer = viewer
        self._uris = uris
        self._list_changed = list_changed
        self._listener: Callable[[ServerEvent], None] | None = None
        self._pacer = Pacer(lambda: self._tell(ResourcesListChanged()))
        # What ends the stream when the gate refuses its caller on a later check.
        self.end: Callable[[], None] = lambda: None

    async def publish(self, event: ServerEvent) -> None:
        self._tell(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        self._listener = listener
        leave = self._hub.add(self)

        def unsubscribe() -> None:
            leave()
            self._viewer.cancel()
            self._pacer.cancel()
            self._listener = None

        return unsubscribe

    def hear(self, event: Event, refs: set[ResourceRef]) -> None:
        if self._listener is None:
            return
        self._viewer.recheck_if_due(self.end)
        if not self._viewer.may_hear(event):
            return
        for uri in self._uris.matching(refs):
            self._tell(ResourceUpdated(uri=uri))
        if self._list_changed and event.adds_resource:
            self._pacer.ask()

    def _tell(self, event: ServerEvent) -> None:
        if self._listener is not None:
            self._listener(event)

"""The fetch layer's rules: which addresses a source may not live at (the rule itself is
:mod:`kamiyo.outbound.addresses`, shared with the webhook sender), how long a
``Retry-After`` asks for, how far apart requests to one host go, how a location shows in logs.

Kept apart from :mod:`kamiyo.intel.sources.fetch` (which applies them) so each reads at once.
"""

import asyncio
import datetime as dt
import email.utils
import ipaddress
import socket
import urllib.parse

from kamiyo.intel.sources.base import FetchError
from kamiyo.outbound.addresses import Address, refusal


class TransientError(Exception):
    """An attempt failed in a way another attempt may not (429, 5xx, network, truncation).

    ``reason`` is what the operator reads; ``retry_after`` the wait the source asked for.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def shown(location: str) -> str:
    """``location`` as logs and messages may show it: no userinfo, query or fragment."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("http", "https"):
        return location.partition("?")[0]
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}" + ("?…" if parts.query else "")


def retry_after_s(value: str | None, now: dt.datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


class HostPacer:
    """Spaces requests to each host ``interval_s`` apart (shared by fetchers that share hosts)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next: dict[str, float] = {}

    def delay(self, host: str, now: float) -> float:
        """Seconds to wait before a request to ``host``; the slot is reserved at once, so
        concurrent requests queue rather than all going after one wait."""
        start = max(now, self._next.get(host, now))
        self._next[host] = start + self.interval_s
        return start - now


async def check_public(url: str, host: str, port: int) -> None:
    """Raise :class:`FetchError` unless ``host`` is, and resolves only to, public addresses.

    Every address the name resolves to is checked: the client may connect to any of them, so
    one private answer among public ones is enough to refuse.
    """
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:
                raise TransientError(f"{host} did not resolve (temporary DNS failure)") from None
            raise FetchError(f"{shown(url)}: the host {host} does not resolve") from None
        # A scoped IPv6 address (fe80::1%eth0) is judged without its scope.
        addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    for address in addresses:
        kind = refusal(address)
        if kind is not None:
            named = host if str(address) == host else f"{host} ({address})"
            raise FetchError(
                f"{shown(url)}: refused: {named} is a {kind} address; set "
                "KAMIYO_SOURCES_ALLOW_PRIVATE=true to fetch from it"
            )

"""Which network addresses outbound requests may not reach: one rule for every client that
fetches a URL somebody else chose (source feeds, alert webhooks, OAuth client documents).

A URL's host can name, or resolve to, the machine itself, the private network it sits in, or a
cloud's metadata service (169.254.169.254); a request there would let whoever chose the URL read
or poke what only KAMIYO can reach (server-side request forgery).
"""

import asyncio
import ipaddress
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: Address) -> str | None:
    """What kind of non-public address ``address`` is (None: a public one).

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo) are judged by that address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        teredo = address.teredo
        embedded = address.ipv4_mapped or address.sixtofour or (teredo[1] if teredo else None)
        if embedded is not None:
            return refusal(embedded)
    for kind, hit in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    ):
        if hit:
            return kind
    return None


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` names (itself, if it is one), in the resolver's order, once each,
    for the caller to judge with ``refusal`` and then connect to (so the address checked is the
    one used). ``socket.gaierror`` when the name does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # A scoped IPv6 address (fe80::1%eth0) is judged without its scope.
    found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    return list(dict.fromkeys(found))

"""Fetch a small JSON document from a URL somebody else chose (OAuth client metadata).

The same guards as alert webhooks (``alerts/webhook.py``): the host is resolved here, every
address it names must be public (``addresses.refusal``), and the connection goes to the
address that was checked (the name still in ``Host`` and TLS's SNI), so a DNS answer that
changes between the check and the connect cannot send it inside. No redirects are followed, the
whole fetch has a deadline, and at most ``max_bytes`` are read.
"""

import asyncio
import json
import socket
from typing import Any

import httpx2

from kamiyo.outbound.addresses import Address, refusal, resolve
from kamiyo.outbound.http import shared_ssl_context


class DocumentError(Exception):
    """The document could not be had; the message says why, for the person who asked."""


async def fetch_json(
    url: str, *, allow_loopback: bool, timeout_s: float = 5.0, max_bytes: int = 16 * 1024
) -> Any:
    """The JSON at ``url`` (https; plain http only to loopback, when ``allow_loopback``)."""
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL:
        raise DocumentError("the URL does not parse") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise DocumentError("the URL must be https:// with a host")
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch(parsed, allow_loopback, timeout_s, max_bytes)
    except TimeoutError:
        raise DocumentError(f"fetching it took longer than {timeout_s:g} s") from None


async def _fetch(url: httpx2.URL, allow_loopback: bool, timeout_s: float, max_bytes: int) -> Any:
    host = url.raw_host.decode("ascii")
    addresses = await _resolve(host, url.port or (443 if url.scheme == "https" else 80))
    for address in addresses:
        kind = refusal(address)
        if kind is not None and not (kind == "loopback" and allow_loopback):
            article = "an" if kind[0] in "aeiou" else "a"
            raise DocumentError(f"{host} is {article} {kind} address ({address}); refused")
    local = all(refusal(address) == "loopback" for address in addresses)
    if url.scheme != "https" and not local:
        raise DocumentError("the URL must be https://")
    headers = {"host": url.netloc.decode("ascii"), "accept": "application/json"}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    async with httpx2.AsyncClient(
        verify=shared_ssl_context(), trust_env=False, follow_redirects=False, timeout=timeout_s
    ) as client:
        request = client.build_request(
            "GET", url.copy_with(host=str(addresses[0])), headers=headers, extensions=extensions
        )
        try:
            response = await client.send(request, stream=True)
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except httpx2.HTTPError as exc:
            raise DocumentError(f"could not fetch it ({type(exc).__name__})") from None
        try:
            if response.status_code != 200:
                raise DocumentError(f"it answered HTTP {response.status_code}, not 200")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise DocumentError(f"it is larger than {max_bytes} bytes")
        finally:
            await response.aclose()
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DocumentError("it is not JSON") from None


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return await resolve(host, port)
    except socket.gaierror:
        raise DocumentError(f"the host {host} does not resolve") from None

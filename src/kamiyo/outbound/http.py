"""HTTP endpoints for the pool: one client per URL, whose secrets never reach a log line.

Provider URLs carry API keys in the query string, the path or the userinfo. The label of an
endpoint is its ``host[:port]`` (with ``#2``… when one host is listed twice), and httpx2, which
logs each request's URL at INFO, sees only the origin: the full URL is put back by the
transport, below the logging.

Every client verifies with the same SSL context: building one loads the CA bundle (tens of
milliseconds), and a server opens a client per explorer and RPC endpoint at start.
"""

import functools
import ssl
from collections.abc import Sequence

import httpx2


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The default verifying context (certifi's CA bundle), built once per process."""
    return httpx2.create_ssl_context()


class _HiddenUrlTransport(httpx2.AsyncBaseTransport):
    """Sends to the endpoint's full URL while the client sees only its origin."""

    def __init__(self, url: httpx2.URL) -> None:
        self._url = url
        # Looked up at call time, so tests can swap the transport class.
        self._inner = httpx2.AsyncHTTPTransport(verify=shared_ssl_context())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        # The caller's path extends the endpoint's, its query adds to the endpoint's.
        extra = request.url.path.lstrip("/")
        url = self._url
        if extra:
            url = url.copy_with(path=url.path.rstrip("/") + "/" + extra)
        if request.url.params:
            url = url.copy_merge_params(request.url.params)
        real = httpx2.Request(
            request.method,
            url,
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(real)

    async def aclose(self) -> None:
        await self._inner.aclose()


def parse_url(url: str, *, kind: str = "endpoint") -> httpx2.URL:
    """An http(s) URL with a host; ValueError (that never repeats the URL) otherwise."""
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL:
        raise ValueError(f"an {kind} URL does not parse") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{kind} URLs must be http(s) with a host, not {parsed.scheme or '?'}:")
    return parsed


def redact(url: str | httpx2.URL) -> str:
    """``host[:port]``: how an endpoint is named wherever people or machines can read it."""
    parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    return parsed.netloc.decode("ascii").rpartition("@")[2]


def http_endpoints(
    urls: Sequence[str], *, timeout_s: float, kind: str = "endpoint"
) -> list[tuple[str, httpx2.AsyncClient]]:
    """(label, client) per URL, for :class:`~kamiyo.outbound.pool.EndpointPool`.

    Each client sends its requests to the full URL (path and query included, userinfo as basic
    auth); a path the caller gives is appended to the URL's, its parameters added to the URL's.
    ``timeout_s`` bounds one attempt.
    """
    if isinstance(urls, str) or not urls:
        raise ValueError(f"at least one {kind} URL is required")
    parsed = [parse_url(url, kind=kind) for url in urls]
    endpoints: list[tuple[str, httpx2.AsyncClient]] = []
    for url in parsed:
        label = redact(url)
        taken = sum(1 for seen, _ in endpoints if seen.split("#")[0] == label)
        auth = (url.username, url.password) if url.username else None
        client = httpx2.AsyncClient(
            base_url=url.copy_with(userinfo=b"", path="/", query=None, fragment=None),
            transport=_HiddenUrlTransport(url.copy_with(userinfo=b"", fragment=None)),
            auth=auth,
            timeout=timeout_s,
        )
        endpoints.append((f"{label}#{taken + 1}" if taken else label, client))
    return endpoints


def http_failure(exc: httpx2.HTTPError) -> str:
    """The reason to log for a failed HTTP attempt: the error's kind, never its URL."""
    return type(exc).__name__

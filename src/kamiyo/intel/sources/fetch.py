"""The fetch layer every source adapter reads through.

One :class:`Fetcher` per source run: it owns the HTTP client (timeouts, a User-Agent naming
KAMIYO), retries 429, 5xx and network errors with exponential backoff and full jitter (honouring
``Retry-After``), sends conditional requests from the validators kept per location, spaces
requests to one host, caps and checks the size of every body, refuses URLs that point into the
machine or its network (unless allowed), and reads local files for ``--from``. A document is
whole or it is a :class:`FetchError`: never a partial body. The rules it applies are in
:mod:`kamiyo.intel.sources.fetch_rules`.

Lines it logs and messages it raises name a location by scheme, host and path only: query
strings can carry keys.
"""

import asyncio
import datetime as dt
import importlib.metadata
import logging
import mimetypes
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import httpx2

import kamiyo
from kamiyo.intel.sources.base import Document, FetchError
from kamiyo.intel.sources.fetch_rules import (
    HostPacer,
    TransientError,
    check_public,
    retry_after_s,
    shown,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}


class FetchSettings(Protocol):
    """What a :class:`Fetcher` needs to know (``kamiyo.config.SourceSettings`` has it)."""

    timeout_s: float
    attempts: int
    backoff_s: float
    backoff_cap_s: float
    retry_after_cap_s: float
    min_interval_s: float
    max_document_bytes: int
    allow_private: bool


def project_url() -> str | None:
    """The project's home page, as the package metadata names it (``[project.urls]``)."""
    try:
        entries = importlib.metadata.metadata("kamiyo").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    urls = {label.strip(): url.strip() for label, _, url in (e.partition(",") for e in entries)}
    return next((urls[k] for k in ("Homepage", "Repository", "Source") if k in urls), None)


def user_agent() -> str:
    """``KAMIYO/<version> (+<project url>) source-refresh``: who asks, and where to read about
    it (the URL part is left out while the package metadata names none)."""
    url = project_url()
    return f"KAMIYO/{kamiyo.__version__}{f' (+{url})' if url else ''} source-refresh"


def _read_local(path: Path, cap: int) -> bytes:
    """The bytes of a local file (run in a thread); FetchError for what an operator fixes."""
    try:
        if not path.is_file():
            raise FetchError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
        size = path.stat().st_size
        if size > cap:
            raise FetchError(f"{path}: {_too_big(size, cap)}")
        return path.read_bytes()
    except OSError as exc:
        raise FetchError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


def _too_big(size: int, cap: int, more: str = "") -> str:
    return f"the document is {more}{size} bytes, above KAMIYO_SOURCES_MAX_DOCUMENT_BYTES ({cap})"


class Fetcher:
    """Fetches one source's documents (implements :class:`~kamiyo.intel.sources.base.Fetch`).

    ``validators`` maps a location to its ``{"etag": …, "last_modified": …}``; it is read for
    conditional requests and updated after each whole 200 (the caller persists it).
    ``allow_private`` (default: the settings') lets URLs reach loopback and private addresses;
    ``allow_local`` lets locations be local files (``--from``). ``sleep``, ``clock`` and
    ``jitter`` are attributes so tests can record waits instead of waiting.
    """

    def __init__(
        self,
        source: str,
        settings: FetchSettings,
        *,
        validators: dict[str, dict[str, str]] | None = None,
        allow_private: bool | None = None,
        allow_local: bool = False,
        pacer: HostPacer | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.validators = validators if validators is not None else {}
        self.allow_private = settings.allow_private if allow_private is None else allow_private
        self.allow_local = allow_local
        self.pacer = pacer or HostPacer(settings.min_interval_s)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.clock: Callable[[], float] = time.monotonic
        self.jitter: Callable[[], float] = random.random
        self._client = httpx2.AsyncClient(
            headers={"User-Agent": user_agent()},
            timeout=httpx2.Timeout(settings.timeout_s),
            follow_redirects=False,  # followed here, so each hop passes the address check
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, location: str) -> Document | None:
        try:
            scheme = urllib.parse.urlsplit(location).scheme.lower()
            if scheme in ("http", "https"):
                return await self._fetch_url(location)
            if scheme in ("", "file"):
                return await self._read_file(location)
            raise FetchError(
                f"{shown(location)}: only http(s) URLs are fetched (and local files with --from)"
            )
        except FetchError as exc:
            # Whoever asked says what the failure means (the run: the source failed; an
            # adapter: one item is incomplete), once; here it is detail.
            log.debug("%s: %s", self.source, exc)
            raise

    async def _read_file(self, location: str) -> Document:
        if not self.allow_local:
            raise FetchError(f"{shown(location)}: local files are read only with --from")
        parts = urllib.parse.urlsplit(location)
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise FetchError(f"{shown(location)}: a file URL must name a file on this machine")
        path = Path(urllib.request.url2pathname(parts.path) if parts.scheme else location)
        body = await asyncio.to_thread(_read_local, path, self.settings.max_document_bytes)
        return Document(str(path), body, mimetypes.guess_type(path.name)[0])

    async def _fetch_url(self, location: str) -> Document | None:
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(location)
            except TransientError as failure:
                if attempt == attempts:
                    tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
                    message = f"{shown(location)}: {failure.reason} (after {tries})"
                    raise FetchError(message) from None
                wait = failure.retry_after
                if wait is None:  # full jitter: anywhere up to the exponential ceiling
                    ceiling = self.settings.backoff_s * 2 ** (attempt - 1)
                    wait = self.jitter() * min(self.settings.backoff_cap_s, ceiling)
                log.info(
                    "%s: %s: %s; attempt %d of %d, next in %.1f s",
                    *(self.source, shown(location), failure.reason, attempt, attempts, wait),
                )
                await self.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(self, location: str) -> Document | None:
        """One try, redirects followed; :class:`TransientError` for what another may fix."""
        known = self.validators.get(location, {})
        headers = {}
        if "etag" in known:
            headers["If-None-Match"] = known["etag"]
        if "last_modified" in known:
            headers["If-Modified-Since"] = known["last_modified"]
        url = location
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = httpx2.URL(url)
            except httpx2.InvalidURL:
                raise FetchError(f"{shown(url)}: not a valid URL") from None
            if not target.host:
                raise FetchError(f"{shown(url)}: the URL names no host")
            if not self.allow_private:
                port = target.port or (443 if target.scheme == "https" else 80)
                await check_public(url, target.host, port)
            wait = self.pacer.delay(target.netloc.decode("ascii"), self.clock())
            if wait > 0:
                await self.sleep(wait)
            try:
                async with self._client.stream("GET", target, headers=headers) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urllib.parse.urljoin(url, response.headers["location"])
                        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                            raise FetchError(f"{shown(location)}: redirected off http(s)")
                        continue
                    return await self._answer(location, url, response, bool(headers))
            except httpx2.TimeoutException:
                raise TransientError(f"timed out after {self.settings.timeout_s:g} s") from None
            except httpx2.TransportError as exc:
                raise TransientError(f"network error ({type(exc).__name__})") from None
            except httpx2.DecodingError:
                raise FetchError(f"{shown(location)}: the body does not decode") from None
        raise FetchError(f"{shown(location)}: more than {MAX_REDIRECTS} redirects")

    async def _answer(
        self, location: str, url: str, response: httpx2.Response, conditional: bool
    ) -> Document | None:
        status = response.status_code
        what = f"HTTP {status} {response.reason_phrase}".rstrip()
        if status == 304:
            if not conditional:
                raise FetchError(f"{shown(location)}: answered 304 to an unconditional request")
            return None
        if status == 429 or status >= 500:
            wait = retry_after_s(response.headers.get("retry-after"), dt.datetime.now(dt.UTC))
            cap = self.settings.retry_after_cap_s
            if wait is not None and wait > cap:
                raise FetchError(
                    f"{shown(location)}: {what}, and the source asks to wait {wait:.0f} s, longer "
                    f"than KAMIYO_SOURCES_RETRY_AFTER_CAP_S ({cap:g} s): try again later"
                )
            raise TransientError(what, wait)
        if status in (404, 410):
            raise FetchError(f"{shown(location)}: not found ({what}); check the source's URL")
        if not 200 <= status < 300:
            raise FetchError(f"{shown(location)}: refused ({what})")
        body = await self._read_body(response)
        fresh = {
            key: response.headers[header]
            for key, header in (("etag", "etag"), ("last_modified", "last-modified"))
            if header in response.headers
        }
        if fresh:
            self.validators[location] = fresh
        else:  # an older version's validators would make the next request wrongly conditional
            self.validators.pop(location, None)
        return Document(url, body, response.headers.get("content-type"))

    async def _read_body(self, response: httpx2.Response) -> bytes:
        cap = self.settings.max_document_bytes
        declared = response.headers.get("content-length", "")
        expected = int(declared) if declared.isdigit() else None
        where = shown(str(response.url))
        if expected is not None and expected > cap:
            raise FetchError(f"{where}: {_too_big(expected, cap)}")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:  # decoded bytes: a small compressed body can expand
                    raise FetchError(f"{where}: {_too_big(size, cap, 'over ')}")
                chunks.append(chunk)
        except httpx2.RemoteProtocolError:  # the peer closed before the whole body came
            raise TransientError(_truncated(response.num_bytes_downloaded, expected)) from None
        # Content-Length counts the bytes on the wire, compressed or not.
        if expected is not None and response.num_bytes_downloaded < expected:
            raise TransientError(_truncated(response.num_bytes_downloaded, expected))
        return b"".join(chunks)


def _truncated(received: int, expected: int | None) -> str:
    of = f" of {expected}" if expected is not None else ""
    return f"body truncated (received {received}{of} bytes)"

"""One attempt to deliver an alert to a rule's webhook, signed per Standard Webhooks.

The worker decides when to try and what to record; this module makes one attempt and says what
became of it (:class:`Attempt`), in words the rule's owner reads in the delivery log.

The URL was chosen by a customer, so every attempt guards against server-side request forgery:
the host is resolved anew (a name may point elsewhere since the rule was made), every address it
resolves to must be public (:func:`kamiyo.outbound.addresses.refusal`), and the connection goes
to the address that was checked, never to the name again, so a DNS answer that changes between
the check and the connect (rebinding) cannot send it inside. The request still carries the
original ``Host`` header, and TLS checks the certificate against the original name (SNI).
Redirects are not followed (the target would escape the check) and the answer is read only up
to a cap, since a receiver can answer with anything.
"""

import asyncio
import datetime as dt
import ipaddress
import logging
import math
import os
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache

import httpx2
import standardwebhooks

import kamiyo
from kamiyo.alerts.webhook_url import WebhookUrlError, check_webhook_url
from kamiyo.config import WebhookSettings
from kamiyo.outbound import redact
from kamiyo.outbound.addresses import Address, refusal, resolve

log = logging.getLogger(__name__)

USER_AGENT = f"kamiyo-webhooks/{kamiyo.__version__}"
# Answers worth another attempt: the receiver is busy or broken for now, not refusing for good.
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to. ``error`` is for the owner's delivery log (None: delivered);
    ``retryable`` says whether another attempt may fare better (False for a refused address,
    a bad URL, a redirect or a 4xx other than 408 and 429)."""

    delivered: bool
    status_code: int | None
    error: str | None
    retryable: bool


class _FailedError(Exception):
    """This attempt failed before an answer (refused, unresolved, unreachable); ``retryable``
    as in :class:`Attempt`."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The certificates receivers are checked against (the system's, or ``SSL_CERT_FILE``);
    built once, as loading them is slow. One name, so tests can trust their own CA."""
    return httpx2.create_ssl_context()


def signed_headers(
    *, webhook_id: str, body: str, secret: str, timestamp: dt.datetime
) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``: id, timestamp (Unix seconds) and signature."""
    when = timestamp.replace(tzinfo=dt.UTC) if timestamp.tzinfo is None else timestamp
    # The library reads the datetime's fields as UTC whatever its zone, so hand it UTC.
    when = when.astimezone(dt.UTC)
    signature = standardwebhooks.Webhook(secret).sign(webhook_id, when, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(math.floor(when.timestamp())),
        "webhook-signature": signature,
    }


async def send(
    url: str,
    *,
    webhook_id: str,
    body: str,
    secret: str,
    timestamp: dt.datetime,
    settings: WebhookSettings,
    require_https: bool,
) -> Attempt:
    """POST ``body`` to ``url`` once, signed with the rule's ``secret``.

    ``require_https`` is production's rule (plain http is refused, except to loopback when
    ``settings.allow_loopback`` permits it). Never raises for anything the receiver or the
    network does: the outcome is in the :class:`Attempt`, and in one log line.
    """
    headers = signed_headers(webhook_id=webhook_id, body=body, secret=secret, timestamp=timestamp)
    headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
    # With allow_loopback, plain http passes the form check; the addresses decide below.
    strict = require_https and not settings.allow_loopback
    try:
        parsed = httpx2.URL(check_webhook_url(url, require_https=strict))
    except (WebhookUrlError, httpx2.InvalidURL) as exc:
        return _logged(webhook_id, "?", Attempt(False, None, str(exc), retryable=False))
    where = redact(parsed)
    try:
        async with asyncio.timeout(settings.timeout_s):
            attempt = await _attempt(parsed, headers, body, settings, require_https)
    except _FailedError as failed:
        attempt = Attempt(False, None, failed.reason, retryable=failed.retryable)
    except TimeoutError:
        attempt = Attempt(False, None, f"timed out after {settings.timeout_s:g} s", True)
    return _logged(webhook_id, where, attempt)


async def _attempt(
    url: httpx2.URL,
    headers: dict[str, str],
    body: str,
    settings: WebhookSettings,
    require_https: bool,
) -> Attempt:
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    for address in addresses:
        kind = refusal(address)
        if kind is not None and not (kind == "loopback" and settings.allow_loopback):
            article = "an" if kind[0] in "aeiou" else "a"
            raise _FailedError(
                f"refused: {_named(host, address)} is {article} {kind} address", retryable=False
            )
    # Only a receiver on this machine (allowed by allow_loopback) may go without TLS.
    local = all(refusal(address) == "loopback" for address in addresses)
    if url.scheme == "http" and require_https and not local:
        raise _FailedError(
            "the webhook URL must start with https:// (plain http reaches loopback only)",
            retryable=False,
        )
    # The name's own host header and SNI, the checked address to connect to.
    headers = {**headers, "host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    failure = ""
    async with httpx2.AsyncClient(
        verify=tls_context(), trust_env=False, follow_redirects=False, timeout=settings.timeout_s
    ) as client:
        for address in addresses:
            pinned = url.copy_with(host=str(address))
            try:
                return await _post(client, pinned, headers, extensions, body, settings)
            except httpx2.ConnectError as exc:  # try the name's next address
                failure = f"could not connect to {_named(host, address)}: {_cause(exc)}"
            except httpx2.TimeoutException:
                raise TimeoutError from None
            except httpx2.HTTPError as exc:
                raise _FailedError(
                    f"the connection to {host} failed ({type(exc).__name__})", retryable=True
                ) from None
    raise _FailedError(failure, retryable=True)


def _named(host: str, address: Address) -> str:
    """``host``, with the address it resolved to when it is a name."""
    try:
        return host if ipaddress.ip_address(host) == address else f"{host} ({address})"
    except ValueError:
        return f"{host} ({address})"


def _cause(exc: BaseException) -> str:
    """What lies under a connect failure ("Connection refused", a certificate's fault): the
    libraries above it only say that every attempt failed."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed ({exc.verify_message})"
    if isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, ssl.SSLError):
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return await resolve(host, port)
    except socket.gaierror as exc:
        # A name that stops resolving may come back (the owner's DNS): worth another try.
        temporary = " (temporary DNS failure)" if exc.errno == socket.EAI_AGAIN else ""
        raise _FailedError(f"the host {host} does not resolve{temporary}", retryable=True) from None


async def _post(
    client: httpx2.AsyncClient,
    url: httpx2.URL,
    headers: dict[str, str],
    extensions: dict[str, str],
    body: str,
    settings: WebhookSettings,
) -> Attempt:
    request = client.build_request(
        "POST", url, headers=headers, content=body.encode(), extensions=extensions
    )
    response = await client.send(request, stream=True)
    try:
        # Read (raw, never decompressed) up to the cap so the receiver sees its answer taken,
        # then drop the connection with whatever else it meant to send.
        read = 0
        if settings.max_response_bytes:
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= settings.max_response_bytes:
                    break
    finally:
        await response.aclose()
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(True, status, None, retryable=False)
    if 300 <= status < 400:
        return Attempt(False, status, f"redirects are not followed (HTTP {status})", False)
    retryable = status >= 500 or status in RETRYABLE_STATUS
    return Attempt(False, status, f"HTTP {status}", retryable=retryable)


def _logged(webhook_id: str, where: str, attempt: Attempt) -> Attempt:
    # The host only: webhook paths and queries often carry the receiver's own token.
    if attempt.delivered:
        log.info("webhook %s to %s delivered (HTTP %s)", webhook_id, where, attempt.status_code)
    else:
        kind = "retryable" if attempt.retryable else "permanent"
        log.warning("webhook %s to %s failed: %s (%s)", webhook_id, where, attempt.error, kind)
    return attempt

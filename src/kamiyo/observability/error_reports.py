"""Optional error reports to Sentry: with ``KAMIYO_SENTRY_DSN`` set, error log records and
unhandled exceptions become Sentry events; without it, sentry-sdk is never imported.

What is sent is what the logs would show, and no more: no request bodies, headers, cookies or
local variables (``send_default_pii`` and ``include_local_variables`` off, no automatic
framework integrations), and every string of every event and breadcrumb passes through the
same redaction as the logs (redaction.py) in ``before_send``. Each event is tagged with its
request id, to find its log lines.
"""

import sys
from typing import Any, Final

from kamiyo.config.base import ConfigurationError
from kamiyo.config.tracing import TracingSettings
from kamiyo.observability.redaction import Redacted
from kamiyo.observability.request_context import current_request_id

REQUEST_ID_TAG: Final = "request_id"
FLUSH_TIMEOUT_S: Final = 5  # how long a stopping server waits for its last events to be sent
# Event keys that would carry what a caller sent, or the process's environment: never sent.
_DROPPED: Final = ("request", "user", "extra")


def start_error_reports(
    settings: TracingSettings, environment: str, secrets: list[str], release: str
) -> bool:
    """Send error reports when a DSN is set; True when they are on."""
    if settings.sentry_dsn is None:
        return False
    try:
        import sentry_sdk
    except ImportError:
        raise ConfigurationError(
            "KAMIYO_SENTRY_DSN is set but sentry-sdk is not installed: install "
            "kamiyo[sentry], or unset it"
        ) from None
    scrubber = _Scrubber(Redacted(secrets))
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or environment,
        release=release,
        send_default_pii=False,
        include_local_variables=False,  # a frame's locals may hold a key or a token
        max_request_body_size="never",
        auto_enabling_integrations=False,  # errors come through logging; tracing is OTel's
        traces_sample_rate=None,
        before_send=scrubber.event,
        before_breadcrumb=scrubber.breadcrumb,
    )
    return True


def flush_error_reports() -> None:
    """Send the events still held (a server stopped by SIGTERM skips exit handlers, see
    tracing.flush_spans); nothing when reports are off (sentry-sdk is then not imported)."""
    if "sentry_sdk" in sys.modules:
        sys.modules["sentry_sdk"].flush(FLUSH_TIMEOUT_S)


class _Scrubber:
    def __init__(self, redacted: Redacted) -> None:
        self._redacted = redacted

    def event(self, event: Any, hint: Any) -> Any:
        for key in _DROPPED:
            event.pop(key, None)
        request_id = current_request_id()
        if request_id is not None:
            event.setdefault("tags", {})[REQUEST_ID_TAG] = request_id
        return self._scrub(event)

    def breadcrumb(self, crumb: Any, hint: Any) -> Any:
        return self._scrub(crumb)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redacted.redact(value)
        if isinstance(value, dict):
            return {key: self._scrub(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(item) for item in value]
        return value

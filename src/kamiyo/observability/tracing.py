"""Optional OpenTelemetry tracing: with ``KAMIYO_OTEL_ENDPOINT`` set, a span per HTTP request and
per tool call, sent in batches to that OTLP/HTTP collector; without it, nothing of
OpenTelemetry is imported and every span here is a no-op.

An HTTP request's span continues the trace of its ``traceparent`` when it has one (and the
request id is then that trace's id, request_context.py); each span carries ``kamiyo.request_id``.
A tool call over MCP runs in a task of the SDK's session, outside its HTTP request's context, so
the HTTP span is left in the request's scope (``TRACE_STATE``) for the tool span to name as its
parent. The provider is this module's own, not the process-wide one, and flushes at exit.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from kamiyo import __version__
from kamiyo.config.base import ConfigurationError
from kamiyo.config.tracing import TracingSettings
from kamiyo.observability.request_context import current_request_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

REQUEST_ID_ATTRIBUTE: Final = "kamiyo.request_id"
# Where the HTTP middleware leaves a request's span (its OpenTelemetry context) in the scope.
TRACE_STATE: Final = "otel_context"
TRACES_PATH: Final = "/v1/traces"  # OTLP/HTTP's path under the collector's base URL

# How long a stopping server waits for its last spans to be sent.
FLUSH_TIMEOUT_S: Final = 5

_tracer: "Tracer | None" = None
_provider: "TracerProvider | None" = None


def start_tracing(settings: TracingSettings) -> bool:
    """Turn tracing on when an endpoint is set; True when it is on."""
    global _tracer, _provider
    if settings.otel_endpoint is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "KAMIYO_OTEL_ENDPOINT is set but OpenTelemetry is not installed: install "
            "kamiyo[otel], or unset it"
        ) from None
    resource = Resource.create(
        {"service.name": settings.otel_service_name, "service.version": __version__}
    )
    provider = TracerProvider(resource=resource)  # shuts down, flushing its spans, at exit
    endpoint = settings.otel_endpoint.rstrip("/") + TRACES_PATH
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _tracer, _provider = provider.get_tracer("kamiyo", __version__), provider
    return True


def flush_spans() -> None:
    """Send the spans still held. A server stopped by SIGTERM calls this as it stops: uvicorn
    ends such a process by raising the signal again, and exit handlers do not run."""
    if _provider is not None:
        _provider.force_flush(FLUSH_TIMEOUT_S * 1000)


def tracing() -> bool:
    return _tracer is not None


@contextmanager
def http_span(
    method: str, path: str, headers: Mapping[str, str], state: dict[str, Any]
) -> Iterator["Span | None"]:
    """The span of one HTTP request, continuing its ``traceparent``; None with tracing off.
    ``path`` is the path as logs show it (no query, private parameters hidden)."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract(dict(headers))
    with _tracer.start_as_current_span(
        f"{method} {path}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes=_with_request_id({"http.request.method": method, "url.path": path}),
    ) as span:
        state[TRACE_STATE] = trace.set_span_in_context(span)
        yield span


def set_status_code(span: "Span | None", status: int) -> None:
    if span is not None:
        span.set_attribute("http.response.status_code", status)


@contextmanager
def tool_span(tool: str, state: object = None) -> Iterator[None]:
    """The span of one tool call, a child of its HTTP request's span when ``state`` (the
    request's scope state) holds one."""
    if _tracer is None:
        yield
        return
    parent = state.get(TRACE_STATE) if isinstance(state, dict) else None
    attributes = _with_request_id({"kamiyo.tool": tool})
    with _tracer.start_as_current_span(f"tool {tool}", context=parent, attributes=attributes):
        yield


def _with_request_id(attributes: dict[str, str]) -> dict[str, str]:
    request_id = current_request_id()
    return attributes | {REQUEST_ID_ATTRIBUTE: request_id} if request_id else attributes

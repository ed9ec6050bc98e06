"""How a tool call runs: credentials -> the gate -> the intel function -> the gate again.

Every tool and resource goes through ``run_gated``; none checks tiers or limits itself. A refusal
or a bad argument becomes an ``isError`` result with one sentence that says what to change; an
unexpected failure is logged with its traceback and reaches the client only as a short notice.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cachetools import TTLCache
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.gate import Call, Gate, Grant, Refusal
from kamiyo.config import Settings
from kamiyo.errors import describe_validation_error, validate_given
from kamiyo.runtime import Runtime

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
GrantWork = Callable[[Grant, AsyncSession], Awaitable[BaseModel]]
Rendered = tuple[dict[str, Any], str]


class ArgumentError(ValueError):
    """An argument the intel layer cannot use; the message says how to fix the call."""


@dataclass
class ServerState:
    """What the tools share: settings, the gate, and the runtime once the transport is up."""

    settings: Settings
    gate: Gate
    runtime: Runtime | None = None
    # stdio has no headers: its credential comes from the environment at start.
    stdio_credential: str | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    # Rendered answers to identical read-only calls, kept for settings.cache_ttl_s seconds.
    cache: TTLCache[Hashable, Rendered] | None = None

    def __post_init__(self) -> None:
        if self.cache is None and self.settings.cache_ttl_s > 0:
            self.cache = TTLCache(maxsize=self.settings.cache_size, ttl=self.settings.cache_ttl_s)

    def require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the MCP server was used before its runtime was opened")
        return self.runtime


def peer_of(ctx: Context[Any] | None) -> str:
    """The client's address on HTTP; "local" on stdio (one user, the one who started us)."""
    request = ctx.request_context.request if ctx is not None else None
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    return host if isinstance(host, str) else "local"


def credential_of(ctx: Context[Any] | None, state: ServerState) -> str | None:
    """The bearer credential of an HTTP request, else the one stdio started with."""
    headers = ctx.headers if ctx is not None else None
    if headers is not None:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    return state.stdio_credential


# Where a refusal's machine-readable details travel. Not structuredContent: the TypeScript SDK
# clients (v1 and v2) check structuredContent against the tool's output schema even on error
# results, and throw instead of showing the error.
REFUSAL_META_KEY = "kamiyo/refusal"


def error_result(message: str, meta: Mapping[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        is_error=True,
        meta=dict(meta) if meta else None,
    )


def refusal_result(refusal: Refusal) -> CallToolResult:
    details = {"error": refusal.reason, "message": refusal.message, **refusal.details}
    if refusal.retry_after_s is not None:
        details["retry_after_seconds"] = refusal.retry_after_s
    return error_result(refusal.message, {REFUSAL_META_KEY: details})


def render(model: BaseModel) -> Rendered:
    """An answer as structured content and as the same JSON in text, for clients that read text."""
    return model.model_dump(mode="json"), model.model_dump_json()


# The lists an answer's records are in, for metering how many records a call returned.
RECORD_LISTS = ("incidents", "matches", "rows")


def count_results(structured: Mapping[str, Any]) -> int | None:
    for name in RECORD_LISTS:
        value = structured.get(name)
        if isinstance(value, list):
            return len(value)
    return None


def rendered_result(rendered: Rendered, meta: Mapping[str, Any] | None = None) -> CallToolResult:
    structured, text = rendered
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=structured,
        meta=dict(meta) if meta else None,
    )


async def run_gated(
    state: ServerState,
    ctx: Context[Any] | None,
    tool: str,
    work: GrantWork,
    cache_key: Hashable | None = None,
) -> CallToolResult:
    """Admit, run ``work`` with the grant's caps in a database session, complete, render.

    ``cache_key`` (the call's arguments) lets an identical call with the same caps be answered
    from the cache; it is still admitted and completed (metered) like any other.
    """
    meta = dict(ctx.request_context.meta or {}) if ctx is not None else {}
    call = Call(tool=tool, credential=credential_of(ctx, state), meta=meta, peer=peer_of(ctx))
    try:
        admission = await state.gate.admit(call)
    except Exception:  # the gate's store is down: refuse, and keep the cause in the log
        log.exception("gate failed for %s", tool)
        return error_result(f"{tool} is temporarily unavailable; try again shortly.")
    if isinstance(admission, Refusal):
        log.info("tool %s refused: %s", tool, admission.reason)
        return refusal_result(admission)
    key = None
    if cache_key is not None and state.cache is not None:
        key = (
            tool,
            cache_key,
            admission.max_results,
            admission.hide_after,
            admission.detailed_risk,
        )
        cached = state.cache.get(key)
        if cached is not None:
            receipt = await state.gate.complete(call, admission, "ok", count_results(cached[0]))
            return rendered_result(cached, receipt)
    try:
        async with state.require_runtime().sessions() as session:
            rendered = render(await work(admission, session))
    except ValidationError as exc:
        await state.gate.complete(call, admission, "error")
        return error_result(f"Invalid arguments for {tool}: {describe_validation_error(exc)}")
    except ArgumentError as exc:
        await state.gate.complete(call, admission, "error")
        return error_result(f"Invalid arguments for {tool}: {exc}")
    except Exception:
        log.exception("tool %s failed", tool)
        await state.gate.complete(call, admission, "error")
        return error_result(f"{tool} failed on the server; the error was logged. Try again later.")
    if key is not None and state.cache is not None:
        state.cache[key] = rendered
    receipt = await state.gate.complete(call, admission, "ok", count_results(rendered[0]))
    return rendered_result(rendered, receipt)


def parse(model: type[M], names: Mapping[str, str] | None = None, **fields: Any) -> M:
    """Build an intel query from tool arguments, leaving out the ones not given.

    ``names`` maps the model's field names to the tool's argument names for error messages.
    """
    try:
        return validate_given(model, fields)
    except ValidationError as exc:
        raise ArgumentError(describe_validation_error(exc, names)) from exc

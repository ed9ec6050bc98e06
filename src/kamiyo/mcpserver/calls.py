"""How a tool call runs: credentials -> the gate -> the intel function -> the gate again.

Every tool and resource goes through ``run_gated``; none checks tiers or limits itself. A refusal
or a bad argument becomes an ``isError`` result with one sentence that says what to change; an
unexpected failure is logged with its traceback and reaches the client only as a short notice.
"""

import json
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

from kamiyo.access.gate import Call, Gate, Grant, Refusal, Replayed
from kamiyo.config import Settings
from kamiyo.errors import describe_validation_error, validate_given
from kamiyo.payments.transfers import TransferClaim
from kamiyo.payments.wire import payment_in_meta
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
    # Rendered answers to identical read-only calls, kept for settings.answers.cache_ttl_s seconds.
    cache: TTLCache[Hashable, Rendered] | None = None

    def __post_init__(self) -> None:
        if self.cache is None and self.settings.answers.cache_ttl_s > 0:
            self.cache = TTLCache(
                maxsize=self.settings.answers.cache_size, ttl=self.settings.answers.cache_ttl_s
            )

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
    if refusal.reason == "payment_required":
        return payment_required_result(refusal)
    details = {"error": refusal.reason, "message": refusal.message, **refusal.details}
    if refusal.retry_after_s is not None:
        details["retry_after_seconds"] = refusal.retry_after_s
    return error_result(refusal.message, {REFUSAL_META_KEY: details})


def payment_required_result(refusal: Refusal) -> CallToolResult:
    """x402 over MCP: PaymentRequired as structuredContent and as the first text, verbatim,
    then one plain sentence for clients (and LLMs) that cannot pay."""
    required = refusal.details["x402"]
    return CallToolResult(
        content=[
            TextContent(type="text", text=json.dumps(required, separators=(",", ":"))),
            TextContent(type="text", text=refusal.message),
        ],
        structured_content=required,
        is_error=True,
    )


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


@dataclass(frozen=True, slots=True)
class Answer:
    rendered: Rendered
    meta: Mapping[str, Any]  # e.g. the payment receipt


@dataclass(frozen=True, slots=True)
class Failure:
    """The call was admitted but produced no answer; nothing was charged."""

    message: str
    http_status: int  # 400: the arguments; 500: our fault; 503: the gate could not decide


Outcome = Answer | Refusal | Failure


async def run_gated(
    state: ServerState,
    ctx: Context[Any] | None,
    tool: str,
    work: GrantWork,
    cache_key: Hashable | None = None,
    arguments: Mapping[str, Any] | None = None,
    transfer: TransferClaim | None = None,
) -> CallToolResult:
    """Run an MCP tool call through the gate; ``arguments`` are the ones a price depends on,
    ``transfer`` a Solana transfer named in the call's arguments as its payment."""
    meta = ctx.request_context.meta if ctx is not None else None
    call = Call(
        tool=tool,
        credential=credential_of(ctx, state),
        arguments=arguments or {},
        payment=payment_in_meta(meta or {}) or transfer,
        peer=peer_of(ctx),
    )
    outcome = await execute(state, call, work, cache_key)
    if isinstance(outcome, Refusal):
        return refusal_result(outcome)
    if isinstance(outcome, Failure):
        return error_result(outcome.message)
    return rendered_result(outcome.rendered, outcome.meta)


async def execute(
    state: ServerState, call: Call, work: GrantWork, cache_key: Hashable | None = None
) -> Outcome:
    """Admit, run ``work`` with the grant's caps in a database session, complete. Every surface
    (MCP tools, REST) goes through here and renders the outcome in its own format.

    ``cache_key`` (the call's arguments) lets an identical call with the same caps be answered
    from the cache; it is still admitted and completed (metered, paid) like any other.
    """
    tool = call.tool
    try:
        admission = await state.gate.admit(call)
    except Exception:  # the gate's store is down: refuse, and keep the cause in the log
        log.exception("gate failed for %s", tool)
        return Failure(f"{tool} is temporarily unavailable; try again shortly.", 503)
    if isinstance(admission, Refusal):
        log.info("tool %s refused: %s", tool, admission.reason)
        return admission
    if isinstance(admission, Replayed):
        return Answer(render_structured(admission.answer), admission.meta)
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
            return await _finish(state, call, admission, cached)
    try:
        async with state.require_runtime().sessions() as session:
            rendered = render(await work(admission, session))
    except ValidationError as exc:
        await state.gate.complete(call, admission, "error")
        return Failure(f"Invalid arguments for {tool}: {describe_validation_error(exc)}", 400)
    except ArgumentError as exc:
        await state.gate.complete(call, admission, "error")
        return Failure(f"Invalid arguments for {tool}: {exc}", 400)
    except Exception:
        log.exception("tool %s failed", tool)
        await state.gate.complete(call, admission, "error")
        return Failure(f"{tool} failed on the server; the error was logged. Try again later.", 500)
    if key is not None and state.cache is not None:
        state.cache[key] = rendered
    return await _finish(state, call, admission, rendered)


async def _finish(state: ServerState, call: Call, grant: Grant, rendered: Rendered) -> Outcome:
    """Complete the call (settle its payment, meter it) and hand over the answer, or withhold
    it when its payment did not settle."""
    structured = rendered[0]
    answer = structured if grant.payment is not None else None  # kept with its payment
    completed = await state.gate.complete(call, grant, "ok", count_results(structured), answer)
    if isinstance(completed, Refusal):
        log.info("tool %s answer withheld: %s", call.tool, completed.reason)
        return completed
    return Answer(rendered, completed)


def transfer_claim(signature: str | None, reference: str | None) -> TransferClaim | None:
    """The transfer a call names as its payment, if it names one (half of one is refused)."""
    if signature is None and reference is None:
        return None
    return TransferClaim(signature or "", reference or "")


def render_structured(structured: dict[str, Any]) -> Rendered:
    return structured, json.dumps(structured, separators=(",", ":"), ensure_ascii=False)


def parse(model: type[M], names: Mapping[str, str] | None = None, **fields: Any) -> M:
    """Build an intel query from tool arguments, leaving out the ones not given.

    ``names`` maps the model's field names to the tool's argument names for error messages.
    """
    try:
        return validate_given(model, fields)
    except ValidationError as exc:
        raise ArgumentError(describe_validation_error(exc, names)) from exc

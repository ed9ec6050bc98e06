"""Log notifications for the agent: one ``notifications/message`` per tool call it made.

Each line says the tool, how the call ended and how long it took: at ``info`` for an answer or
the caller's own mistake (bad arguments, nothing found), at ``warning`` for a refusal (tier,
limit, payment) or an outage, with the sentence saying what to do. The server's own logs go to
stderr as always; these are only what the caller may read about its own calls.

Who hears them depends on the protocol era, as the SDK and spec say:

- Up to 2025-11-25 a session asks with ``logging/setLevel``; the level is kept per connection
  (in the SDK's per-connection ``Connection.state``) and nothing is sent before one is set.
- 2026-07-28 removed ``logging/setLevel``: a request opts in itself with the reserved
  ``io.modelcontextprotocol/logLevel`` in its ``_meta``, and its lines ride its own response
  stream. No opt-in, no line.

A call nobody listens to costs one dictionary look-up.
"""

import time
from collections.abc import Mapping
from typing import Any, Final, get_args

from mcp.server.connection import Connection, allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp_types import (
    CallToolResult,
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from kamiyo.access.gate import RefusalReason
from kamiyo.mcpserver.bounds import shown
from kamiyo.service.answers import FailureKind

LOGGER_NAME: Final = "kamiyo"
LEVELS: Final[tuple[LoggingLevel, ...]] = get_args(LoggingLevel)  # least severe first
_LEVEL_KEY: Final = "kamiyo/log_level"
# How a call may end without anything the operator or agent must act on: said at info.
_ROUTINE = {"ok", FailureKind.INVALID_ARGUMENTS.value, FailureKind.NOT_FOUND.value}


def register(server: MCPServer) -> None:
    """Serve ``logging/setLevel`` (and so declare the logging capability) and report each
    tool call to whoever asked. MCPServer has no parameter for the handler (the low-level
    ``on_set_logging_level`` is deprecated from 2026-07-28, which still serves older clients),
    so it is added to the low-level server, the way ``MCPServer.completion`` adds its own."""
    server._lowlevel_server.add_request_handler(
        "logging/setLevel", SetLevelRequestParams, set_level
    )
    server.middleware.append(report_tool_calls)


def _connection_state(session: ServerSession) -> dict[str, Any] | None:
    """The connection's scratch state, which lasts across its requests. The SDK builds a
    ``ServerSession`` per request, and offers its ``Connection`` to handlers only through it
    for now (its TODO L54: a context rework exposes ``ctx.connection``)."""
    connection = getattr(session, "_connection", None)
    return connection.state if isinstance(connection, Connection) else None


async def set_level(
    ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams
) -> EmptyResult:
    state = _connection_state(ctx.session)
    if state is not None:
        state[_LEVEL_KEY] = params.level
    return EmptyResult()


def levels_heard(ctx: ServerRequestContext[Any, Any]) -> frozenset[LoggingLevel]:
    """The levels of lines this request's caller receives (none: no line is made)."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return allowed_log_levels(ctx.protocol_version, ctx.meta)
    state = _connection_state(ctx.session)
    level = state.get(_LEVEL_KEY) if state is not None else None
    return frozenset(LEVELS[LEVELS.index(level) :]) if level in LEVELS else frozenset()


async def report_tool_calls(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Server middleware: after a ``tools/call`` someone listens to, one line about it."""
    if ctx.method != "tools/call" or ctx.request_id is None:
        return await call_next(ctx)
    heard = levels_heard(ctx)

    if not heard:
        return await call_next(ctx)
    started = time.perf_counter()
    result = await call_next(ctx)
    # The handler's result arrives here already in its wire form (a dict).
    called = CallToolResult.model_validate(result) if isinstance(result, Mapping) else result
    if isinstance(called, CallToolResult):
        name = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
        level, line = describe(str(name), called, time.perf_counter() - started)
        if level in heard:
            notification = LoggingMessageNotification(
                params=LoggingMessageNotificationParams(level=level, data=line, logger=LOGGER_NAME)
            )
            await ctx.session.send_notification(notification, related_request_id=ctx.request_id)
    return result


def describe(
    tool: str, result: CallToolResult, seconds: float
) -> tuple[LoggingLevel, dict[str, Any]]:
    """The level and the line for one call's result."""
    structured = result.structured_content or {}
    if not result.is_error:
        status = "ok"
    elif "x402Version" in structured:
        status = RefusalReason.PAYMENT_REQUIRED.value
    else:
        status = str(structured.get("error", FailureKind.INTERNAL.value))
    line: dict[str, Any] = {
        "tool": shown(tool),
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
    }
    if result.is_error:
        text = next((c.text for c in result.content if isinstance(c, TextContent)), "")
        line["message"] = str(structured.get("message", text))
    return ("info" if status in _ROUTINE else "warning"), line

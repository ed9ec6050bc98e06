"""The x402 MCP extension binding (``org.x402/payment``) for clients of protocol 2026-07-28.

x402's MCP transport (``specs/transports-v2/mcp.md``, "Extension Binding") defines two bindings
of one flow. A request whose per-request client capabilities advertise ``org.x402/payment``
(``_meta["io.modelcontextprotocol/clientCapabilities"].extensions``) and that needs paying is
answered ``{"resultType": "payment_required", "paymentRequired": PaymentRequired}``: not a tool
error and not a tool result. Every other client keeps the tool-result binding (tools.py:
``isError`` with PaymentRequired in ``structuredContent`` and ``content[0].text``), which on
2026-07-28 carries ``resultType: "complete"`` as every result of that era does (the SDK's
default). Payments and receipts travel in ``_meta["x402/payment"]`` and
``_meta["x402/payment-response"]`` in both. The server advertises the extension in
``server/discover`` (``capabilities.extensions``) through the SDK's extension interface.
"""

from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CallToolRequestParams, CallToolResult

X402_EXTENSION = "org.x402/payment"
PAYMENT_REQUIRED_RESULT = "payment_required"
# The protocol revisions that have result types and per-request capabilities.
EXTENSION_ERA = "2026-07-28"


class X402PaymentBinding(Extension):
    identifier = X402_EXTENSION

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        result = await call_next(ctx)
        if not advertised(ctx):
            return result
        required = payment_required_in(result)
        if required is None:
            return result
        meta = result.meta if isinstance(result, CallToolResult) else None
        answer: dict[str, Any] = {
            "resultType": PAYMENT_REQUIRED_RESULT,
            "paymentRequired": required,
        }
        if meta:
            answer["_meta"] = meta
        return answer


def advertised(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request may be answered with the extension binding."""
    if ctx.protocol_version < EXTENSION_ERA:  # revisions are dates: they sort as strings
        return False
    per_request = (ctx.meta or {}).get(CLIENT_CAPABILITIES_META_KEY)
    if isinstance(per_request, Mapping):
        extensions = per_request.get("extensions")
        return isinstance(extensions, Mapping) and X402_EXTENSION in extensions
    declared = ctx.session.client_capabilities
    return declared is not None and X402_EXTENSION in (declared.extensions or {})


def payment_required_in(result: HandlerResult) -> dict[str, Any] | None:
    """The x402 PaymentRequired of a tool-result-binding answer, if it is one."""
    if not isinstance(result, CallToolResult) or not result.is_error:
        return None
    structured = result.structured_content
    if isinstance(structured, dict) and "x402Version" in structured and "accepts" in structured:
        return structured
    return None

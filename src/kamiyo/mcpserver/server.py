"""Building KAMIYO's MCP server and running it on stdio.

The tools are the catalogue's operations, listed and called by ``CatalogueServer`` itself
rather than registered one function at a time: each operation's query model is its input
schema and its parser, so arguments are checked once, by the model every surface uses.
"""

from typing import Any

from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from mcp_types import Tool as MCPTool

from kamiyo import __version__
from kamiyo.access.gate import Gate, OpenGate
from kamiyo.config import Settings
from kamiyo.mcpserver import completion, content, logs, subscriptions, tools
from kamiyo.mcpserver.bounds import MAX_NAME, RequestBounds, too_long
from kamiyo.mcpserver.payment_binding import X402PaymentBinding
from kamiyo.mcpserver.stdio_drain import serve_stdio_draining
from kamiyo.observability.request_context import new_request_id, request_id_in, serving
from kamiyo.observability.tracing import tool_span
from kamiyo.service.catalogue import OPERATIONS, Operation
from kamiyo.service.pipeline import UNKNOWN_OPERATION
from kamiyo.service.running import running
from kamiyo.service.state import ServerState, default_gate

INSTRUCTIONS = (
    "KAMIYO answers questions about crypto exploits from a curated incident database. "
    "Use search_exploits to find incidents by protocol, attack type, chain, date or loss; "
    "get_exploit for one incident's addresses, transactions and references; "
    "find_exploit_by_tx for the incidents an attack transaction belongs to; "
    "get_exploit_stats for totals; assess_protocol_risk for a protocol's exploit history; "
    "check_wallet_interactions to screen an address; get_usage for your limits and what is left. "
    "Losses are in USD at the time of the attack."
)


class CatalogueServer(MCPServer):
    """An ``MCPServer`` whose tools are the catalogue's operations."""

    def __init__(self, state: ServerState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self._operations: dict[str, Operation[Any, Any]] = {op.name.value: op for op in OPERATIONS}
        self._listed = [tools.listed(op, state) for op in OPERATIONS]
        self._schemas = {tool.name: tool.input_schema for tool in self._listed}

    async def list_tools(self) -> list[MCPTool]:
        return list(self._listed)

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        return self._schemas.get(name)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult:
        # Each call under its request's id: the HTTP request's, or on stdio one of its own.
        request = context.request_context.request if context is not None else None
        with (
            serving(request_id_in(request) or new_request_id()),
            # A span named by the caller's text only when it names a tool: one name per tool.
            tool_span(
                name if name in self._operations else UNKNOWN_OPERATION.name,
                getattr(request, "scope", {}).get("state"),
            ),
        ):
            return await self._call_tool(name, arguments, context)

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None
    ) -> CallToolResult:
        # An unknown tool is a tool error, as the SDK answers it: the agent can correct it; it
        # is still counted and recorded. An oversized name is refused before it is looked up,
        # and said back only in part.
        problem = too_long("Tool names", name, MAX_NAME)
        operation = None if problem else self._operations.get(name)
        if operation is None:
            problem = problem or f"Unknown tool: {name}"
            message = f"{problem}. Tools: {', '.join(self._operations)}."
            return await tools.call_unknown(self.state, message, context)
        return await tools.call(self.state, operation, arguments, context)


# How long a 2026-07-28 client may reuse an answer, and with whom (SEP-2549). The lists are the
# same for every caller of this server (a tool's price is the server's; prompts differ by tier
# only in the text prompts/get returns, which is not cached): public, for an hour, as they
# change only with a new version or settings. A read answers by the caller's tier (the free
# tier's delay and cap): private, for as long as the server keeps an answer itself.
LISTS_TTL_MS = 3_600_000


def cache_hints(settings: Settings) -> dict[CacheableMethod, CacheHint]:
    lists = CacheHint(ttl_ms=LISTS_TTL_MS, scope="public")
    read = CacheHint(ttl_ms=int(settings.answers.cache_ttl_s * 1000), scope="private")
    return {
        "server/discover": lists,
        "tools/list": lists,
        "prompts/list": lists,
        "resources/list": lists,
        "resources/templates/list": lists,
        "resources/read": read,
    }


def build_server(state: ServerState) -> CatalogueServer:
    server = CatalogueServer(
        state,
        name="kamiyo",
        title="KAMIYO",
        description="Crypto-exploit intelligence for AI agents.",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=state.settings.log.level,
        cache_hints=cache_hints(state.settings),
        subscriptions=False,  # served by subscriptions.register, per caller
        # 2026-07-28 clients that advertise org.x402/payment get its payment_required result.
        extensions=[X402PaymentBinding()] if state.gate.takes_payments else None,
    )
    content.register(server, state)
    completion.register(server, state)
    logs.register(server)
    subscriptions.register(server, state)
    server.middleware.append(RequestBounds(server))
    return server


def describing_server() -> CatalogueServer:
    """A server that says what KAMIYO offers (tools, prompts, instructions), for the ``.mcpb``
    manifest: default settings (no ``.env``), the open gate; never served."""
    settings = Settings(_env_file=None)
    return build_server(ServerState(settings=settings, gate=OpenGate(settings.answers.max_results)))


async def serve_stdio(settings: Settings, credential: str | None, gate: Gate | None = None) -> int:
    """Serve on stdin/stdout until the client closes them or a signal stops us; logs go to
    stderr. Returns how many calls the shutdown deadline cut."""
    state = ServerState(
        settings=settings, gate=gate or default_gate(settings), stdio_credential=credential
    )
    # A refused URL stops the start; the clients open on the first screen (a desktop host
    # waits for the first answer, and most sessions never screen).
    state.check_explorers()
    server = build_server(state)
    async with running(state):
        try:  # at EOF or a signal the calls in flight finish first (stdio_drain.py)
            return await serve_stdio_draining(server._lowlevel_server, settings.shutdown.grace_s)
        finally:
            await state.aclose()

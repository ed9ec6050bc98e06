"""Building KAMIYO's MCP server and running it on stdio."""

from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from kamiyo import __version__
from kamiyo.access.account_gate import AccountGate
from kamiyo.access.gate import Gate
from kamiyo.config import Settings
from kamiyo.errors import tidy_sdk_validation_message
from kamiyo.mcpserver import account_tools, content, tools
from kamiyo.mcpserver.calls import ServerState, error_result
from kamiyo.payments.cashier import open_cashier
from kamiyo.runtime import open_runtime

INSTRUCTIONS = (
    "KAMIYO answers questions about crypto exploits from a curated incident database. "
    "Use search_exploits to find incidents by protocol, attack type, chain, date or loss; "
    "get_exploit for one incident's addresses, transactions and references; "
    "get_exploit_stats for totals; assess_protocol_risk for a protocol's exploit history; "
    "check_wallet_interactions to screen an address; get_usage for your limits and what is left. "
    "Losses are in USD at the time of the attack."
)


def default_gate(settings: Settings) -> Gate:
    cashier = open_cashier(
        settings.x402, secret_key=settings.auth.secret_key, upgrade_url=settings.site.upgrade_url
    )
    return AccountGate(settings, cashier)


def build_server(state: ServerState) -> MCPServer:
    server: MCPServer = MCPServer(
        name="kamiyo",
        title="KAMIYO",
        description="Crypto-exploit intelligence for AI agents.",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=state.settings.log.level,
    )
    tools.register(server, state)
    account_tools.register(server, state)
    account_tools.register_pricing(server, state)
    content.register(server, state)
    server.middleware.append(ArgumentChecks(server))
    return server


class ArgumentChecks:
    """Refuse unknown argument names, and say argument errors in one line.

    The SDK ignores unknown names, so a typo ("chains" for "chain") would quietly widen a search;
    and it reports bad arguments as multi-line validation dumps, which this shortens to
    ``Invalid arguments for TOOL: field: problem``.
    """

    def __init__(self, server: MCPServer) -> None:
        self._server = server
        self._known: dict[str, set[str]] | None = None
        self._prompts: set[str] | None = None

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        params = ctx.params
        if ctx.method == "prompts/get" and isinstance(params, Mapping):
            await self._check_prompt(str(params.get("name")))
        if ctx.method != "tools/call" or not isinstance(params, Mapping):
            return await call_next(ctx)
        if self._known is None:
            self._known = {
                tool.name: set((tool.input_schema or {}).get("properties", {}))
                for tool in await self._server.list_tools()
            }
        allowed = self._known.get(str(params.get("name")))
        arguments = params.get("arguments")
        if allowed is not None and isinstance(arguments, Mapping):
            unknown = sorted(set(arguments) - allowed)
            if unknown:
                return error_result(
                    f"Unknown argument(s) for {params.get('name')}: {', '.join(unknown)}. "
                    f"It takes: {', '.join(sorted(allowed)) or 'no arguments'}."
                )
        result = await call_next(ctx)
        # The chain hands results on serialised; only error results are looked at.
        if isinstance(result, dict) and result.get("isError"):
            content = result.get("content") or [{}]
            tidy = tidy_sdk_validation_message(str(content[0].get("text", "")))
            if tidy:
                return error_result(tidy)
        return result

    async def _check_prompt(self, name: str) -> None:
        """An unknown prompt is the caller's mistake: a clean INVALID_PARAMS, not a crash log."""
        if self._prompts is None:
            self._prompts = {prompt.name for prompt in await self._server.list_prompts()}
        if name not in self._prompts:
            raise MCPError(
                INVALID_PARAMS,
                f"Unknown prompt: {name}. Prompts: {', '.join(sorted(self._prompts))}.",
            )


async def serve_stdio(settings: Settings, credential: str | None) -> None:
    """Serve on stdin/stdout until the client closes them; logs go to stderr."""
    state = ServerState(settings=settings, gate=default_gate(settings), stdio_credential=credential)
    server = build_server(state)
    async with open_runtime(settings) as runtime, state.gate.serving(runtime.sessions):
        state.runtime = runtime
        await server.run_stdio_async()

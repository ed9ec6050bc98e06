"""Tools about the caller's own account rather than about exploits."""

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.gate import Grant
from kamiyo.access.usage import UsageReport
from kamiyo.mcpserver.calls import ServerState, run_gated

# Not idempotent: every call counts against the limits it reports.
ACCOUNT_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False)


def register(server: MCPServer, state: ServerState) -> None:
    @server.tool(
        name="get_usage",
        description="Your tier, its limits, and how much of them you have used: requests in "
        "the last minute and in the current day's quota, with when each frees up, and calls "
        "this month. Free; counts as one request.",
        annotations=ACCOUNT_READ,
    )
    async def get_usage(ctx: Context) -> Annotated[CallToolResult, UsageReport]:
        async def work(grant: Grant, session: AsyncSession) -> UsageReport:
            return await state.gate.usage(grant, session)

        return await run_gated(state, ctx, "get_usage", work)

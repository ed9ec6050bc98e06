"""Tools about the caller's own account rather than about exploits."""

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.gate import Grant
from kamiyo.access.usage import UsageReport
from kamiyo.mcpserver.calls import ServerState, run_gated
from kamiyo.payments import prices
from kamiyo.payments.networks import SCHEME
from kamiyo.payments.prices import AcceptedPayment, PriceList
from kamiyo.tiers import FREE_TOOLS

# Not idempotent: every call counts against the limits it reports.
ACCOUNT_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=False, open_world_hint=False)
READ_ONLY_FREE = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


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


def register_pricing(server: MCPServer, state: ServerState) -> None:
    @server.tool(
        name="get_pricing",
        description="What each tool costs per call without a subscription (USDC via x402 on "
        "Base or Solana), price bands by result count, the networks and assets accepted and "
        "where payments go. Free; needs no payment.",
        annotations=READ_ONLY_FREE,
    )
    async def get_pricing(ctx: Context) -> Annotated[CallToolResult, PriceList]:
        async def work(grant: Grant, session: AsyncSession) -> PriceList:
            return price_list(state)

        return await run_gated(state, ctx, "get_pricing", work)


def price_list(state: ServerState) -> PriceList:
    networks = state.settings.x402.networks
    subscribe = state.settings.site.upgrade_url
    how = (
        "Call a priced tool without a credential: the answer is an x402 PaymentRequired "
        "(isError, structuredContent) listing one offer per network. Sign one with an x402 "
        'client and call again with the payment in params._meta["x402/payment"]; the receipt '
        'comes back in _meta["x402/payment-response"]. Nothing is charged unless the tool '
        "answers."
        if networks
        else "This server does not take per-call payments; use an API key."
    )
    if subscribe:
        how += f" Subscriptions: {subscribe}."
    return PriceList(
        enabled=bool(networks),
        tools=prices.tool_prices() if networks else [],
        free_tools=sorted(name for name in FREE_TOOLS if name not in prices.PRICES),
        accepts=[
            AcceptedPayment(
                scheme=SCHEME,
                network=n.network,
                label=n.label,
                asset=n.usdc,
                pay_to=n.pay_to,
            )
            for n in networks
        ],
        how_to_pay=how,
    )

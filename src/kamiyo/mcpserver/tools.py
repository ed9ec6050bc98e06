"""KAMIYO's MCP tools. Names and arguments are public interface: change them with care.

Each tool declares its arguments with types and descriptions (the SDK turns the signature into
the tool's input model and JSON schema), returns ``Annotated[CallToolResult, Model]`` so the
output schema is the intel model's while the gate keeps control of the result, and does its work
through ``run_gated``.
"""

import datetime as dt
import time
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import __version__, intel
from kamiyo.access.gate import Grant
from kamiyo.intel.history import (
    AddressScreen,
    DatasetInfo,
    ProtocolHistory,
    dataset_info,
)
from kamiyo.intel.vocabulary import AttackType
from kamiyo.mcpserver import answers
from kamiyo.mcpserver.calls import ServerState, run_gated, transfer_claim
from kamiyo.payments import prices

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

Chain = Annotated[
    str | None,
    Field(
        description="Chain slug such as ethereum, bsc, arbitrum, base, polygon, optimism, "
        "avalanche (eth, bnb, matic and similar names are understood).",
        max_length=40,
    ),
]
Since = Annotated[dt.date | None, Field(description="Earliest incident date, YYYY-MM-DD.")]
# Paying by plain Solana transfer (see payments/transfers.py); x402 clients use _meta instead.
PaymentSignature = Annotated[
    str | None,
    Field(
        description="Only to pay by Solana transfer: the signature of the USDC transfer made "
        "with the memo an unpaid call of this tool gave.",
        max_length=100,
    ),
]
PaymentReference = Annotated[
    str | None,
    Field(
        description="Only to pay by Solana transfer: the reference given with that memo.",
        max_length=64,
    ),
]
Until = Annotated[dt.date | None, Field(description="Latest incident date, YYYY-MM-DD.")]


class HealthReport(BaseModel):
    status: str = Field(description="ok, or degraded when the database cannot be read.")
    version: str
    uptime_seconds: float
    database: str = Field(description="Backend and whether it answered.")
    limits: str = Field(description="Where rate limits are counted and whether it answers.")
    dataset: DatasetInfo | None


def priced(state: ServerState, tool: str, description: str) -> dict[str, Any]:
    """A tool's name and description, and with x402 on, its per-call price in both the
    description and ``_meta`` so an agent knows the cost before it calls."""
    price = prices.describe(tool)
    if price is None or not state.settings.x402.networks:
        return {"name": tool, "description": description}
    return {
        "name": tool,
        "description": f"{description} Without a subscription: {price} in USDC per call "
        "(x402; see get_pricing).",
        "meta": prices.price_meta(tool),
    }


def register(server: MCPServer, state: ServerState) -> None:
    @server.tool(
        name="health_check",
        description="Server status: version, uptime, database, and how many incidents are "
        "loaded and how recent they are. Free; call it to check the connection.",
        annotations=READ_ONLY,
    )
    async def health_check(ctx: Context) -> Annotated[CallToolResult, HealthReport]:
        async def work(grant: Grant, session: AsyncSession) -> HealthReport:
            backend = session.get_bind().dialect.name
            try:
                await session.execute(text("SELECT 1"))
                info: DatasetInfo | None = await dataset_info(session)
                database, status = f"{backend}: ok", "ok"
            except Exception as exc:  # a health check reports failures, it does not raise them
                info, database, status = None, f"{backend}: {type(exc).__name__}", "degraded"
            return HealthReport(
                status=status,
                version=__version__,
                uptime_seconds=round(time.monotonic() - state.started_monotonic, 1),
                database=database,
                limits=await state.gate.limits_status(),
                dataset=info,
            )

        return await run_gated(state, ctx, "health_check", work)

    @server.tool(
        **priced(
            state,
            "search_exploits",
            "Search past crypto exploits by words (protocol name, attack type) and "
            "filters. Returns incidents with date, protocol, chains, loss in USD, attack type and "
            "the security firms that reported them. Use get_exploit for one incident in full.",
        ),
        annotations=READ_ONLY,
    )
    async def search_exploits(
        ctx: Context,
        query: Annotated[
            str | None,
            Field(
                description="Words to find, e.g. 'euler', 'flash loan', 'oracle manipulation'. "
                "Every word must match (as a prefix). Omit to list by filters only.",
                max_length=256,
            ),
        ] = None,
        chain: Chain = None,
        since: Since = None,
        until: Until = None,
        min_loss_usd: Annotated[
            float | None,
            Field(description="Only incidents that lost at least this many USD.", ge=0),
        ] = None,
        attack_type: Annotated[
            AttackType | None, Field(description="Only this attack type.")
        ] = None,
        sort: Annotated[
            intel.SortOrder | None,
            Field(description="relevance (default with a query), recent (default without), loss."),
        ] = None,
        limit: Annotated[int, Field(description="How many incidents at most.", ge=1, le=1000)] = 10,
        x402_payment_signature: PaymentSignature = None,
        x402_payment_reference: PaymentReference = None,
    ) -> Annotated[CallToolResult, intel.SearchResult]:
        async def work(grant: Grant, session: AsyncSession) -> intel.SearchResult:
            return await answers.search(
                grant,
                session,
                query=query,
                chain=chain,
                since=since,
                until=until,
                min_loss_usd=min_loss_usd,
                attack_type=attack_type,
                sort=sort,
                limit=limit,
            )

        key = (query, chain, since, until, min_loss_usd, attack_type, sort, limit)
        paid_with = transfer_claim(x402_payment_signature, x402_payment_reference)
        return await run_gated(
            state, ctx, "search_exploits", work, key, {"limit": limit}, paid_with
        )

    @server.tool(
        **priced(
            state,
            "get_exploit",
            "One incident in full: addresses with their roles (attacker, attack "
            "contract, victim...), attack transactions, reference links with the firm behind each, "
            "and where the record comes from. Ids come from search_exploits.",
        ),
        annotations=READ_ONLY,
    )
    async def get_exploit(
        ctx: Context,
        exploit_id: Annotated[
            str, Field(description="Incident id, e.g. 20230313_eulerfinance.", max_length=128)
        ],
        x402_payment_signature: PaymentSignature = None,
        x402_payment_reference: PaymentReference = None,
    ) -> Annotated[CallToolResult, intel.Incident]:
        async def work(grant: Grant, session: AsyncSession) -> intel.Incident:
            return await answers.exploit(grant, session, exploit_id)

        paid_with = transfer_claim(x402_payment_signature, x402_payment_reference)
        return await run_gated(state, ctx, "get_exploit", work, exploit_id, None, paid_with)

    @server.tool(
        **priced(
            state,
            "get_exploit_stats",
            "Counts of incidents and total USD lost, grouped by chain, year, month or "
            "attack type, optionally since a date and on one chain.",
        ),
        annotations=READ_ONLY,
    )
    async def get_exploit_stats(
        ctx: Context,
        group_by: Annotated[
            intel.StatsGroup, Field(description="chain, year, month or attack_type.")
        ] = intel.StatsGroup.YEAR,
        since: Since = None,
        until: Until = None,
        chain: Chain = None,
        x402_payment_signature: PaymentSignature = None,
        x402_payment_reference: PaymentReference = None,
    ) -> Annotated[CallToolResult, intel.Stats]:
        async def work(grant: Grant, session: AsyncSession) -> intel.Stats:
            return await answers.stats(
                grant, session, group_by=group_by, since=since, until=until, chain=chain
            )

        paid_with = transfer_claim(x402_payment_signature, x402_payment_reference)
        key = (group_by, since, until, chain)
        return await run_gated(state, ctx, "get_exploit_stats", work, key, None, paid_with)

    @server.tool(
        **priced(
            state,
            "assess_protocol_risk",
            "A protocol's exploit history: how many incidents, how much lost, when, "
            "and by which attack types, with the incidents themselves. It reports history only; "
            "no incident on record is not evidence of safety. On the enterprise tier it adds "
            "recommendations: for each attack type in that history, what a reviewer should check.",
        ),
        annotations=READ_ONLY,
    )
    async def assess_protocol_risk(
        ctx: Context,
        protocol_name: Annotated[
            str, Field(description="Protocol name, e.g. 'Euler' or 'Curve'.", max_length=120)
        ],
        chain: Chain = None,
        x402_payment_signature: PaymentSignature = None,
        x402_payment_reference: PaymentReference = None,
    ) -> Annotated[CallToolResult, ProtocolHistory]:
        async def work(grant: Grant, session: AsyncSession) -> ProtocolHistory:
            return await answers.protocol_risk(
                grant, session, protocol_name=protocol_name, chain=chain
            )

        paid_with = transfer_claim(x402_payment_signature, x402_payment_reference)
        key = (protocol_name, chain)
        return await run_gated(state, ctx, "assess_protocol_risk", work, key, None, paid_with)

    @server.tool(
        **priced(
            state,
            "check_wallet_interactions",
            "Screen an address against incident data: is it a known attacker, attack "
            "contract or front-runner, or listed as a victim? Returns every incident that "
            "lists it.",
        ),
        annotations=READ_ONLY,
    )
    async def check_wallet_interactions(
        ctx: Context,
        wallet_address: Annotated[
            str,
            Field(
                description="EVM address (0x + 40 hex digits) or Solana address (base58).",
                max_length=64,
            ),
        ],
        chain: Chain = None,
        x402_payment_signature: PaymentSignature = None,
        x402_payment_reference: PaymentReference = None,
    ) -> Annotated[CallToolResult, AddressScreen]:
        async def work(grant: Grant, session: AsyncSession) -> AddressScreen:
            return await answers.wallet_screen(
                grant, session, wallet_address=wallet_address, chain=chain
            )

        key = (wallet_address, chain)
        paid_with = transfer_claim(x402_payment_signature, x402_payment_reference)
        return await run_gated(state, ctx, "check_wallet_interactions", work, key, None, paid_with)

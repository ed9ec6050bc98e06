"""Resources and prompts: recent incidents and single incidents to read, and three playbooks."""

import json

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp_types import TextContent
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.access.gate import Grant
from kamiyo.mcpserver.calls import ArgumentError, GrantWork, ServerState, run_gated

RECENT_COUNT = 20


async def _read(state: ServerState, ctx: Context | None, name: str, work: GrantWork) -> str:
    """A resource read through the same gate as the tools; refusals become resource errors.

    The SDK gives static resources no request context, so ``kamiyo://exploits/recent`` is
    gated with the stdio credential (none over HTTP); templated ones see the request's.
    """
    result = await run_gated(state, ctx, name, work)
    block = result.content[0] if result.content else None
    text = block.text if isinstance(block, TextContent) else ""
    if result.is_error:
        raise ResourceError(text or "refused")
    return text


def register(server: MCPServer, state: ServerState) -> None:
    @server.resource(
        "kamiyo://exploits/recent",
        name="recent_exploits",
        description=f"The {RECENT_COUNT} most recent incidents, newest first, as JSON.",
        mime_type="application/json",
    )
    async def recent_exploits() -> str:
        async def work(grant: Grant, session: AsyncSession) -> BaseModel:
            return await intel.search_incidents(
                session,
                intel.SearchQuery(limit=RECENT_COUNT),
                max_results=grant.max_results,
                hide_after=grant.hide_after,
            )

        return await _read(state, None, "resource:exploits/recent", work)

    @server.resource(
        "kamiyo://exploits/{exploit_id}",
        name="exploit",
        description="One incident in full (addresses, transactions, references) as JSON.",
        mime_type="application/json",
    )
    async def exploit(exploit_id: str, ctx: Context) -> str:
        async def work(grant: Grant, session: AsyncSession) -> BaseModel:
            incident = await intel.get_incident(session, exploit_id)
            if incident is None or (grant.hide_after and incident.date > grant.hide_after):
                raise ArgumentError(f"no incident with id {exploit_id!r}")
            return incident

        return await _read(state, ctx, "resource:exploits/{id}", work)

    @server.prompt(
        name="protocol_due_diligence",
        description="Check a DeFi protocol's exploit history before using or integrating it.",
    )
    def protocol_due_diligence(protocol: str) -> list[UserMessage]:
        return [
            UserMessage(
                f"Do security due diligence on the DeFi protocol {json.dumps(protocol)}. "
                "1. Call assess_protocol_risk with its name to get its exploit history. "
                "2. For each incident found, call get_exploit and note the attack type, the "
                "loss, and whether the same weakness could still apply. "
                "3. Call search_exploits with the protocol's main attack types to see how often "
                "such attacks hit similar protocols recently. "
                "Finish with a short verdict that separates facts from your judgement, and say "
                "plainly that no recorded incident does not prove the protocol is safe."
            )
        ]

    @server.prompt(
        name="incident_brief",
        description="Write a short brief on one incident from its record.",
    )
    def incident_brief(exploit_id: str) -> list[UserMessage]:
        return [
            UserMessage(
                f"Write a brief on the incident {json.dumps(exploit_id)}. Call get_exploit for "
                "its record, then cover: what was hit and when, how much was lost (quote the "
                "source's own loss text), the attack type, the attacker and attack-contract "
                "addresses, the attack transactions, and which firms reported it, with links."
            )
        ]

    @server.prompt(
        name="wallet_safety_check",
        description="Check whether an address is linked to known exploits.",
    )
    def wallet_safety_check(address: str) -> list[UserMessage]:
        return [
            UserMessage(
                f"Check the address {json.dumps(address)}. Call check_wallet_interactions with "
                "it. If it is flagged, name the incidents and its role in each, and advise not "
                "to interact with it. If it appears only as a victim, say so. If it is not "
                "listed, say that this is not a guarantee of safety: only the address itself was "
                "checked, not its transactions."
            )
        ]

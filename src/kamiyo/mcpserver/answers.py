"""What each priced question runs, given the grant's caps: shared by the MCP tools and REST.

Arguments arrive as the caller sent them (already typed by the tool's or endpoint's schema) and
are checked by the intel query models; a bad one raises ``ArgumentError`` with a sentence that
names the argument as the caller knows it.
"""

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.access.gate import Grant
from kamiyo.intel.history import (
    AddressScreen,
    AddressScreenQuery,
    ProtocolHistory,
    ProtocolHistoryQuery,
    protocol_history,
    screen_address,
)
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import AttackType
from kamiyo.mcpserver.calls import ArgumentError, parse


async def search(
    grant: Grant,
    session: AsyncSession,
    *,
    query: str | None = None,
    chain: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    min_loss_usd: float | None = None,
    attack_type: AttackType | None = None,
    sort: intel.SortOrder | None = None,
    limit: int = 10,
) -> intel.SearchResult:
    search_query = parse(
        intel.SearchQuery,
        query=query,
        chain=chain,
        since=since,
        until=until,
        min_loss_usd=min_loss_usd,
        attack_type=attack_type,
        sort=sort,
        limit=limit,
    )
    return await intel.search_incidents(
        session, search_query, max_results=grant.max_results, hide_after=grant.hide_after
    )


async def exploit(grant: Grant, session: AsyncSession, exploit_id: str) -> intel.Incident:
    incident = await intel.get_incident(session, exploit_id)
    if incident is None or (grant.hide_after and incident.date > grant.hide_after):
        raise ArgumentError(f"no incident with id {exploit_id!r}; find ids with search_exploits")
    return incident


async def stats(
    grant: Grant,
    session: AsyncSession,
    *,
    group_by: intel.StatsGroup = intel.StatsGroup.YEAR,
    since: dt.date | None = None,
    until: dt.date | None = None,
    chain: str | None = None,
) -> intel.Stats:
    stats_query = parse(intel.StatsQuery, group_by=group_by, since=since, until=until, chain=chain)
    return await intel.incident_stats(session, stats_query)


async def protocol_risk(
    grant: Grant, session: AsyncSession, *, protocol_name: str, chain: str | None = None
) -> ProtocolHistory:
    history_query = parse(
        ProtocolHistoryQuery, {"protocol": "protocol_name"}, protocol=protocol_name, chain=chain
    )
    if not query_terms(history_query.protocol):
        raise ArgumentError("protocol_name needs at least one word to look for")
    return await protocol_history(
        session,
        history_query,
        max_results=grant.max_results,
        hide_after=grant.hide_after,
        detailed=grant.detailed_risk,
    )


async def wallet_screen(
    grant: Grant, session: AsyncSession, *, wallet_address: str, chain: str | None = None
) -> AddressScreen:
    screen_query = parse(
        AddressScreenQuery, {"address": "wallet_address"}, address=wallet_address, chain=chain
    )
    return await screen_address(session, screen_query, hide_after=grant.hide_after)

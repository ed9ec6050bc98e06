"""Exploit intelligence: the incident store, search and statistics.

Plain async functions over an ``AsyncSession`` and pydantic models. This package knows nothing
of MCP, HTTP, tiers, accounts or money; the surfaces call it after the gate has spoken.
"""

from kamiyo.intel.models import (
    Incident,
    IncidentRecord,
    IncidentSummary,
    SearchQuery,
    SearchResult,
    SortOrder,
    Stats,
    StatsGroup,
    StatsQuery,
)
from kamiyo.intel.search import get_incident, search_incidents
from kamiyo.intel.stats import incident_stats

__all__ = [
    "Incident",
    "IncidentRecord",
    "IncidentSummary",
    "SearchQuery",
    "SearchResult",
    "SortOrder",
    "Stats",
    "StatsGroup",
    "StatsQuery",
    "get_incident",
    "incident_stats",
    "search_incidents",
]

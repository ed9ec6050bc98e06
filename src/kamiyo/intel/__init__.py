"""Exploit intelligence: the incident store, search and statistics.

Plain async functions over an ``AsyncSession`` and pydantic models. This package knows nothing
of MCP, HTTP, tiers, accounts or money; the surfaces call it after the gate has spoken, with a
``Scope`` that says what the caller may see. Each operation is one function
``(session, query, scope) -> answer``.
"""

from kamiyo.intel.dataset import DatasetInfo, dataset_info
from kamiyo.intel.models import (
    ExploitQuery,
    Incident,
    IncidentList,
    IncidentSummary,
    SearchQuery,
    SearchResult,
    SortOrder,
    Stats,
    StatsGroup,
    StatsQuery,
    TransactionMatches,
    TransactionQuery,
)
from kamiyo.intel.risk import ProtocolRisk, ProtocolRiskQuery, assess_protocol
from kamiyo.intel.scope import NotFoundError, Scope
from kamiyo.intel.screening import screen_address
from kamiyo.intel.screening_models import AddressScreen, AddressScreenQuery, Verdict
from kamiyo.intel.search import exploit, find_by_transaction, get_incident, search_incidents
from kamiyo.intel.stats import incident_stats
from kamiyo.intel.transaction_screen import (
    TransactionScreen,
    TransactionScreenQuery,
    screen_transaction,
)
from kamiyo.intel.wallet import screen_wallet

__all__ = [
    "AddressScreen",
    "AddressScreenQuery",
    "DatasetInfo",
    "ExploitQuery",
    "Incident",
    "IncidentList",
    "IncidentSummary",
    "NotFoundError",
    "ProtocolRisk",
    "ProtocolRiskQuery",
    "Scope",
    "SearchQuery",
    "SearchResult",
    "SortOrder",
    "Stats",
    "StatsGroup",
    "StatsQuery",
    "TransactionMatches",
    "TransactionQuery",
    "TransactionScreen",
    "TransactionScreenQuery",
    "Verdict",
    "assess_protocol",
    "dataset_info",
    "exploit",
    "find_by_transaction",
    "get_incident",
    "incident_stats",
    "screen_address",
    "screen_transaction",
    "screen_wallet",
    "search_incidents",
]

"""THE CATALOGUE: one declaration per operation, read by every surface.

An operation is its name, its frozen query model (the MCP tool's input schema, the REST
parameters, the command's options, and the answer-cache key), the function it runs, its output
model, its description, its price per call, the lowest tier that unlocks it, its REST route and
its command. The MCP tools, the REST routes, the CLI commands, ``get_pricing``, what each tier
unlocks and the desktop-extension manifest are all derived from this table.

Adding an operation is one function ``(session, query, scope) -> answer`` in ``intel`` and one
entry here.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo import intel
from kamiyo.access.gate import Target
from kamiyo.access.usage import UsageReport
from kamiyo.intel.scope import Scope
from kamiyo.payments.networks import SCHEME
from kamiyo.payments.prices import (
    PAID_MAX_RESULTS,
    AcceptedPayment,
    Band,
    Pack,
    Price,
    PriceList,
    tool_price,
)
from kamiyo.service import alert_ops, own
from kamiyo.service.own import HealthReport, NoArguments
from kamiyo.service.state import Job
from kamiyo.tiers import TIERS, Tier

Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class ToolName(StrEnum):
    """Every operation's public name (MCP tool name, metering and receipts)."""

    HEALTH_CHECK = "health_check"
    SEARCH_EXPLOITS = "search_exploits"
    GET_EXPLOIT = "get_exploit"
    FIND_EXPLOIT_BY_TX = "find_exploit_by_tx"
    GET_EXPLOIT_STATS = "get_exploit_stats"
    ASSESS_PROTOCOL_RISK = "assess_protocol_risk"
    CHECK_WALLET_INTERACTIONS = "check_wallet_interactions"
    SCREEN_TRANSACTION = "screen_transaction"
    GET_USAGE = "get_usage"
    GET_PRICING = "get_pricing"
    CREATE_ALERT = "create_alert"
    LIST_ALERTS = "list_alerts"
    DELETE_ALERT = "delete_alert"
    TEST_ALERT = "test_alert"


@dataclass(frozen=True, slots=True)
class RestRoute:
    """``GET /api/v1/...``: path parameters are query fields named in ``{braces}``; the other
    fields are query parameters (GET, DELETE) or the JSON body (POST)."""

    path: str
    method: str = "GET"


@dataclass(frozen=True, slots=True)
class Command:
    """``kamiyo NAME``: the fields taken as positional arguments, and older flag spellings."""

    name: str
    arguments: tuple[str, ...] = ()
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation(Generic[Q, R]):
    name: ToolName
    title: str
    description: str
    query: type[Q]
    output: type[R]
    run: Callable[[Job, Q], Awaitable[R]]
    tier: Tier = Tier.FREE
    price: Price | None = None
    rest: RestRoute | None = None
    command: Command | None = None
    # Identical calls with the same caps may share an answer (not for answers about the caller).
    cached: bool = True
    # It changes something (MCP readOnlyHint false); and what it changes it removes
    # (destructiveHint).
    writes: bool = False
    destructive: bool = False

    @property
    def target(self) -> Target:
        """The operation as the gate sees it."""
        return Target(self.name.value, self.tier, self.price)


def from_intel(
    function: Callable[[AsyncSession, Q, Scope], Awaitable[R]],
) -> Callable[[Job, Q], Awaitable[R]]:
    """An intel function run with the call's session and the grant's scope."""

    async def run(job: Job, query: Q) -> R:
        return await function(job.session, query, job.grant.scope)

    return run


async def pricing(job: Job, query: NoArguments) -> PriceList:
    networks = job.state.settings.x402.networks
    subscribe = job.state.settings.site.upgrade_url
    how = (
        "Call a priced tool without a credential: a tool the free tier lacks answers an x402 "
        "PaymentRequired (isError, structuredContent; over REST a 402 with a PAYMENT-REQUIRED "
        "header) listing one offer per network; one it unlocks is answered on the free tier "
        "with the same object in paid_offer.payment_required. Sign one offer with an x402 "
        "client and call again with the payment "
        "(MCP: params._meta['x402/payment']; REST: the PAYMENT-SIGNATURE header); the receipt "
        "comes back with the answer. Nothing is charged unless the tool answers."
        if networks
        else "This server does not take per-call payments; use an API key."
    )
    if subscribe:
        how += f" Subscriptions: {subscribe}."
    return PriceList(
        enabled=bool(networks),
        tools=[tool_price(name, price) for name, price in priced()] if networks else [],
        free_tools=sorted(op.name.value for op in OPERATIONS if op.price is None),
        accepts=[
            AcceptedPayment(
                scheme=SCHEME, network=n.network, label=n.label, asset=n.usdc, pay_to=n.pay_to
            )
            for n in networks
        ],
        how_to_pay=how,
    )


async def screen_transaction(
    job: Job, query: intel.TransactionScreenQuery
) -> intel.TransactionScreen:
    """The incident data, then the transaction itself through the server's explorers."""
    return await intel.screen_transaction(
        job.session,
        query,
        job.grant.scope,
        job.state.open_explorers(),  # before the budget starts: opening is not reading
        budget_s=job.state.settings.explorers.budget_s,
    )


async def screen_wallet(job: Job, query: intel.AddressScreenQuery) -> intel.AddressScreen:
    """The direct checks, then the address's history through the server's explorers."""
    return await intel.screen_wallet(
        job.session,
        query,
        job.grant.scope,
        job.state.open_explorers(),  # before the budget starts: opening is not reading
        budget_s=job.state.settings.explorers.budget_s,
        progress=job.progress,
    )


OPERATIONS: tuple[Operation[Any, Any], ...] = (
    Operation(
        ToolName.HEALTH_CHECK,
        "Server health",
        "Server status: version, uptime, database, and how many incidents are loaded and how "
        "recent they are. Free; call it to check the connection.",
        NoArguments,
        HealthReport,
        own.health,
        cached=False,
        command=Command("health"),
    ),
    Operation(
        ToolName.SEARCH_EXPLOITS,
        "Search exploits",
        "Search past crypto exploits by words (protocol name, attack type) and filters. Returns "
        "incidents with date, protocol, chains, loss in USD, attack type and the security firms "
        "that reported them. Use get_exploit for one incident in full.",
        intel.SearchQuery,
        intel.SearchResult,
        from_intel(intel.search_incidents),
        price=Price(
            10_000,
            bands=(Band(10, 10_000), Band(PAID_MAX_RESULTS, 20_000)),
            packs=(Pack(100, 800_000),),
        ),
        rest=RestRoute("/api/v1/exploits"),
        command=Command("search", ("query",), {"min_loss_usd": ("--min-loss",)}),
    ),
    Operation(
        ToolName.GET_EXPLOIT,
        "One exploit in full",
        "One incident in full: addresses with their roles (attacker, attack contract, "
        "victim...), attack transactions, reference links with the firm behind each, and where "
        "the record comes from. Ids come from search_exploits.",
        intel.ExploitQuery,
        intel.Incident,
        from_intel(intel.exploit),
        price=Price(5_000),
        rest=RestRoute("/api/v1/exploits/{exploit_id}"),
        command=Command("show", ("exploit_id",)),
    ),
    Operation(
        ToolName.FIND_EXPLOIT_BY_TX,
        "Exploits by transaction",
        "The incidents whose attack transactions include this transaction hash (EVM 0x… or "
        "Solana signature). An empty answer means KAMIYO has it in no incident, not that the "
        "transaction is safe.",
        intel.TransactionQuery,
        intel.TransactionMatches,
        from_intel(intel.find_by_transaction),
        price=Price(5_000),
        rest=RestRoute("/api/v1/transactions/{tx_hash}"),
    ),
    Operation(
        ToolName.GET_EXPLOIT_STATS,
        "Exploit statistics",
        "Counts of incidents and total USD lost, grouped by chain, year, month or attack type, "
        "optionally since a date and on one chain.",
        intel.StatsQuery,
        intel.Stats,
        from_intel(intel.incident_stats),
        price=Price(5_000),
        rest=RestRoute("/api/v1/stats"),
        command=Command("stats", aliases={"group_by": ("--by",)}),
    ),
    Operation(
        ToolName.ASSESS_PROTOCOL_RISK,
        "Protocol risk",
        "A protocol's risk score (0-100, level low/medium/high/critical) explained by named "
        "factors (recency, loss, root cause, repeats, funds returned; with registry metadata "
        "also audits, age, TVL, category, oracles, fork lineage), each with value, weight, "
        "contribution and reason, plus confidence and its own incident history. Incidents of "
        "integrations and forks are listed as related, not counted. An unknown or misspelled "
        "name gets candidates and no score; no incident on record is not evidence of safety. "
        "On the enterprise tier it adds checks per attack type and per factor.",
        intel.ProtocolRiskQuery,
        intel.ProtocolRisk,
        from_intel(intel.assess_protocol),
        tier=Tier.PERSONAL,
        price=Price(50_000, packs=(Pack(25, 1_000_000),)),
        rest=RestRoute("/api/v1/risk/{protocol_name}"),
        command=Command("risk", ("protocol_name",)),
    ),
    Operation(
        ToolName.CHECK_WALLET_INTERACTIONS,
        "Screen a wallet",
        "Screen an address (EVM, Solana, Bitcoin or Tron) before dealing with it. Returns a "
        "verdict (block: sanctioned or itself an attacker, attack contract or front-runner; "
        "warn: exposure found; allow: history read in full, nothing found; unknown: not enough "
        "read to say), a 0-100 score with its level, and direct_matches: each incident that "
        "lists the address with its role and what that means (an EVM address counts on every "
        "EVM chain), and each sanctions list (OFAC SDN) naming it, with the list's date. "
        "coverage.history_read says whether its transactions were read; when false the "
        "verdict is never allow.",
        intel.AddressScreenQuery,
        intel.AddressScreen,
        screen_wallet,
        tier=Tier.TEAM,
        price=Price(100_000, packs=(Pack(25, 2_000_000),)),
        rest=RestRoute("/api/v1/wallets/{wallet_address}"),
        command=Command("wallet", ("wallet_address",)),
    ),
    Operation(
        ToolName.SCREEN_TRANSACTION,
        "Screen a transaction",
        "Screen a transaction (EVM 0x… hash or Solana signature) before trusting it: is it an "
        "attack transaction of a known incident, and did it pay or take value from an address "
        "an incident lists (attacker, attack contract, exploited contract) or a sanctions list "
        "names? Reads the transaction from the chain (its transfers, internal and token "
        "transfers). Returns a verdict (block, warn, allow, unknown), a 0-100 score, the "
        "incidents it belongs to, the listed parties with their side, and coverage: when the "
        "transaction could not be read, the verdict is never allow.",
        intel.TransactionScreenQuery,
        intel.TransactionScreen,
        screen_transaction,
        tier=Tier.TEAM,
        price=Price(50_000, packs=(Pack(25, 1_000_000),)),
        rest=RestRoute("/api/v1/transactions/{tx_hash}/screen"),
        command=Command("tx", ("tx_hash",)),
    ),
    Operation(
        ToolName.GET_USAGE,
        "Your usage",
        "Your tier, its limits, and how much of them you have used: requests in the last minute "
        "and in the current day's quota, with when each frees up, and calls this month; with "
        "bundle_token, the calls left in that bundle. Free; counts as one request.",
        own.UsageQuery,
        UsageReport,
        own.usage,
        cached=False,
        rest=RestRoute("/api/v1/usage"),
    ),
    Operation(
        ToolName.GET_PRICING,
        "Prices per call",
        "What each tool costs per call without a subscription (USDC via x402 on Base or "
        "Solana), price bands by result count, the networks and assets accepted and where "
        "payments go. Free; needs no payment.",
        NoArguments,
        PriceList,
        pricing,
        cached=False,
        rest=RestRoute("/api/v1/pricing"),
        command=Command("pricing"),
    ),
    Operation(
        ToolName.CREATE_ALERT,
        "Create an alert rule",
        "Be told of new or changed incidents that match filters (chains, protocols, minimum "
        "loss, attack types, watched addresses in any role): by a signed webhook POST "
        "(Standard Webhooks) to webhook_url, and the account's subscribed MCP sessions. The "
        "answer holds the webhook signing secret once: store it. Team tier: "
        f"{TIERS[Tier.TEAM].alert_rules} rules; enterprise: "
        f"{TIERS[Tier.ENTERPRISE].alert_rules}. Paid per call instead, it buys a webhook "
        f"monitor for {alert_ops.MONITOR_DAYS} days owned by the paying address (webhook_url "
        "required).",
        alert_ops.CreateAlertQuery,
        alert_ops.CreatedAlert,
        alert_ops.create_alert,
        tier=Tier.TEAM,
        price=alert_ops.MONITOR_PRICE,
        rest=RestRoute("/api/v1/alerts", "POST"),
        cached=False,
        writes=True,
    ),
    Operation(
        ToolName.LIST_ALERTS,
        "Your alert rules",
        "Your alert rules (or, paid per call, the paying address's monitors) with their "
        "filters, webhook, status (active, disabled, expired) and delivery log: the newest "
        "deliveries with status, attempts, last error and the receiver's response code.",
        NoArguments,
        alert_ops.AlertList,
        alert_ops.list_alerts,
        tier=Tier.TEAM,
        price=alert_ops.MONITOR_CALL_PRICE,
        rest=RestRoute("/api/v1/alerts"),
        cached=False,
    ),
    Operation(
        ToolName.DELETE_ALERT,
        "Delete an alert rule",
        "Delete one of your alert rules by id (from list_alerts); its pending deliveries are "
        "not sent.",
        alert_ops.AlertIdQuery,
        alert_ops.DeletedAlert,
        alert_ops.delete_alert,
        tier=Tier.TEAM,
        price=alert_ops.MONITOR_CALL_PRICE,
        rest=RestRoute("/api/v1/alerts/{alert_id}", "DELETE"),
        cached=False,
        writes=True,
        destructive=True,
    ),
    Operation(
        ToolName.TEST_ALERT,
        "Test an alert webhook",
        "Queue a signed test delivery (event alert.test) to one of your rules' webhook, to "
        "check the receiver and its signature check; list_alerts then shows how it went.",
        alert_ops.AlertIdQuery,
        alert_ops.QueuedTest,
        alert_ops.queue_test_alert,
        tier=Tier.TEAM,
        price=alert_ops.MONITOR_CALL_PRICE,
        rest=RestRoute("/api/v1/alerts/{alert_id}/test", "POST"),
        cached=False,
        writes=True,
    ),
)

CATALOGUE: Mapping[ToolName, Operation[Any, Any]] = {op.name: op for op in OPERATIONS}
assert set(CATALOGUE) == set(ToolName), "every ToolName has exactly one catalogue entry"
assert len(CATALOGUE) == len(OPERATIONS), "an operation is declared twice"


def priced() -> list[tuple[str, Price]]:
    """The operations that can be paid for one call at a time, and their prices."""
    return [(op.name.value, op.price) for op in OPERATIONS if op.price is not None]


def unlocked_by(tier: Tier) -> list[ToolName]:
    """The operations a subscription on ``tier`` may call."""
    return [op.name for op in OPERATIONS if tier.includes(op.tier)]


def target(name: ToolName | str) -> Target:
    """The gate's view of the operation called ``name``."""
    return CATALOGUE[ToolName(name)].target

"""Resources and prompts: incidents to read (recent, one, and those of a protocol, a chain or an
address), the caller's alert rules, and three playbooks.

Resource reads pass the same gate as the tools. Prompts name only the tools the caller can
use (by tier, or by paying per call) and say how to unlock the others.
"""

import json
from typing import NoReturn
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import BaseModel, ValidationError

from kamiyo import intel
from kamiyo.access.gate import Call, Refusal, Target
from kamiyo.chains import known_slugs
from kamiyo.intel.search import incidents_named
from kamiyo.mcpserver import uris
from kamiyo.mcpserver.bounds import shown
from kamiyo.mcpserver.tools import credential_of, peer_of
from kamiyo.mcpserver.uris import (
    ADDRESS_TEMPLATE,
    ALERT_TEMPLATE,
    CHAIN_TEMPLATE,
    EXPLOIT_TEMPLATE,
    PROTOCOL_TEMPLATE,
    RECENT_URI,
    Kind,
    ResourceRef,
)
from kamiyo.service import alert_ops
from kamiyo.service.answers import Answer, Failure, FailureKind
from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.service.pipeline import Work, run_call
from kamiyo.service.state import Job, ServerState
from kamiyo.tiers import Tier

RECENT_COUNT = 20
# The most incidents a protocol's, chain's or address's resource lists (and the tier's cap).
LISTED_COUNT = 50
# Resource not found: -32002 up to protocol 2025-11-25; 2026-07-28 retired it for -32602.
LEGACY_RESOURCE_NOT_FOUND = -32002
FIRST_REVISION_WITH_INVALID_PARAMS = "2026-07-28"


async def _read(
    state: ServerState,
    ctx: Context | None,
    uri: str,
    work: Work,
) -> str:
    """A resource read through the same gate as the tools; a refusal or failure becomes the
    protocol's error, not-found the revision's resource-not-found code."""
    call = Call(Target(uri), credential=credential_of(ctx, state), peer=peer_of(ctx))
    outcome = await run_call(state, call, work)
    if isinstance(outcome, Answer):
        return outcome.text
    if isinstance(outcome, Failure) and outcome.kind is FailureKind.NOT_FOUND:
        _not_found(ctx, uri, outcome.message)
    assert isinstance(outcome, Refusal | Failure)
    raise ResourceError(outcome.message)


def _not_found(ctx: Context | None, uri: str, message: str) -> NoReturn:
    """The revision's resource-not-found error."""
    version = ctx.request_context.protocol_version if ctx is not None else ""
    modern = version >= FIRST_REVISION_WITH_INVALID_PARAMS
    code = INVALID_PARAMS if modern else LEGACY_RESOURCE_NOT_FOUND
    raise MCPError(code, message, data={"uri": uri})


# What a key of each listing template is, said when one does not parse.
_KEY_HINTS = {
    Kind.PROTOCOL: "a protocol's name, e.g. kamiyo://protocols/euler/incidents",
    Kind.CHAIN: f"a chain: {', '.join(known_slugs())}",
    Kind.ADDRESS: "an address (EVM 0x…, Solana, Bitcoin or Tron)",
}


async def _listing(state: ServerState, ctx: Context, kind: Kind, uri: str) -> str:
    """The incidents of the protocol, chain or address ``uri`` names, newest first, through
    the gate; a key that does not parse names no resource."""
    found = uris.parse(uri)
    problem = f"{shown(uri)} names no resource: its key must be {_KEY_HINTS[kind]}."
    if found is None or found.kind is not kind:
        _not_found(ctx, uri, problem)
    ref = found
    try:
        query = _search_for(ref)
    except ValidationError:  # a key uris.parse accepts that a search filter does not
        _not_found(ctx, uri, problem)

    async def work(job: Job) -> BaseModel:
        if query is None:
            return await incidents_named(job.session, ref.key, job.grant.scope, LISTED_COUNT)
        return await intel.search_incidents(job.session, query, job.grant.scope)

    return await _read(state, ctx, ref.uri, work)


def _search_for(ref: ResourceRef) -> intel.SearchQuery | None:
    """The search listing a chain's or address's incidents; None for a protocol's, which are
    those going by its name key (a search by name would also find names that contain it)."""
    if ref.kind is Kind.CHAIN:
        return intel.SearchQuery(chain=ref.key, limit=LISTED_COUNT)
    if ref.kind is Kind.ADDRESS:
        return intel.SearchQuery(address=ref.key, limit=LISTED_COUNT)
    return None


def register(server: MCPServer, state: ServerState) -> None:
    @server.resource(
        RECENT_URI,
        name="recent_exploits",
        description=f"The {RECENT_COUNT} most recent incidents, newest first, as JSON.",
        mime_type="application/json",
    )
    async def recent_exploits() -> str:
        # The SDK gives static resources no request context: gated with the stdio credential
        # (none over HTTP, so the free tier's delay applies).
        async def work(job: Job) -> BaseModel:
            query = intel.SearchQuery(limit=RECENT_COUNT)
            return await intel.search_incidents(job.session, query, job.grant.scope)

        return await _read(state, None, RECENT_URI, work)

    @server.resource(
        EXPLOIT_TEMPLATE,
        name="exploit",
        description="One incident in full (addresses, transactions, references) as JSON.",
        mime_type="application/json",
    )
    async def exploit(exploit_id: str, ctx: Context) -> str:
        async def work(job: Job) -> BaseModel:
            query = intel.ExploitQuery(exploit_id=exploit_id)
            return await intel.exploit(job.session, query, job.grant.scope)

        return await _read(state, ctx, ResourceRef(Kind.EXPLOIT, exploit_id).uri, work)

    # The SDK hands a template's parameters over decoded; encoded again, uris.parse reads each
    # back exactly once, as it reads a URI a client subscribes with.
    @server.resource(
        PROTOCOL_TEMPLATE,
        name="protocol_incidents",
        description="Every incident of one protocol (any spelling or alias of its name), newest "
        "first, as JSON: its exploit history, to read before using or integrating it, or to "
        "subscribe to for its new incidents.",
        mime_type="application/json",
    )
    async def protocol_incidents(protocol: str, ctx: Context) -> str:
        uri = PROTOCOL_TEMPLATE.format(protocol=quote(protocol, safe=""))
        return await _listing(state, ctx, Kind.PROTOCOL, uri)

    @server.resource(
        CHAIN_TEMPLATE,
        name="chain_incidents",
        description="The latest incidents on one chain (a slug such as ethereum, bsc, solana), "
        "newest first, as JSON: what hits that chain now, or to subscribe to for new ones.",
        mime_type="application/json",
    )
    async def chain_incidents(chain: str, ctx: Context) -> str:
        uri = CHAIN_TEMPLATE.format(chain=quote(chain, safe=""))
        return await _listing(state, ctx, Kind.CHAIN, uri)

    @server.resource(
        ADDRESS_TEMPLATE,
        name="address_incidents",
        description="The incidents that list one address in any role (attacker, attack "
        "contract, victim, ...), newest first, as JSON: whether an address is tied to known "
        "exploits, or to subscribe to for new incidents naming it.",
        mime_type="application/json",
    )
    async def address_incidents(address: str, ctx: Context) -> str:
        uri = ADDRESS_TEMPLATE.format(address=quote(address, safe=""))
        return await _listing(state, ctx, Kind.ADDRESS, uri)

    @server.resource(
        ALERT_TEMPLATE,
        name="alert_rule",
        description="One of your account's alert rules and its log of matches and deliveries, "
        "as JSON; subscribe to it to be told in this session when the rule matches a new "
        "incident (create_alert makes a rule).",
        mime_type="application/json",
    )
    async def alert_rule(alert_id: str, ctx: Context) -> str:
        async def work(job: Job) -> BaseModel:
            return await alert_ops.read_alert(job, alert_id)

        return await _read(state, ctx, ResourceRef(Kind.ALERT, alert_id).uri, work)

    @server.prompt(
        name="protocol_due_diligence",
        description="Check a DeFi protocol's exploit history before using or integrating it.",
    )
    async def protocol_due_diligence(protocol: str, ctx: Context) -> list[UserMessage]:
        tools = await _Toolbox.for_caller(state, ctx)
        history = (
            "Call assess_protocol_risk with its name to get its exploit history."
            if tools.usable(ToolName.ASSESS_PROTOCOL_RISK)
            else "Call search_exploits with its name to list its incidents ("
            + tools.locked(ToolName.ASSESS_PROTOCOL_RISK)
            + ")."
        )
        return [
            UserMessage(
                f"Do security due diligence on the DeFi protocol {json.dumps(protocol)}. "
                f"1. {history} "
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
    async def wallet_safety_check(address: str, ctx: Context) -> list[UserMessage]:
        tools = await _Toolbox.for_caller(state, ctx)
        if tools.usable(ToolName.CHECK_WALLET_INTERACTIONS):
            steps = (
                "Call check_wallet_interactions with it and lead with its verdict. For block, "
                "name each sanctions list (with its date) and incident (with the address's "
                "role) in direct_matches, and advise not to interact with it. For warn, list "
                "what was found and any approval to revoke. For unknown, say why (see "
                "coverage.history_read) and that it is not a guarantee of safety. Quote the "
                "summary's advice."
            )
        else:
            steps = (
                f"Call search_exploits with address={json.dumps(address)} to find incidents "
                "that list it, and get_exploit for its role in each. Say that only incident "
                "records were checked ("
                + tools.locked(ToolName.CHECK_WALLET_INTERACTIONS)
                + "), and that no record is not a guarantee of safety."
            )
        return [UserMessage(f"Check the address {json.dumps(address)}. {steps}")]


class _Toolbox:
    """What a caller can call: by tier, or by paying per call where the server takes it."""

    def __init__(self, state: ServerState, tier: Tier | None) -> None:
        self._state = state
        self._tier = tier

    @classmethod
    async def for_caller(cls, state: ServerState, ctx: Context) -> "_Toolbox":
        identity = await state.gate.identify(credential_of(ctx, state))
        return cls(state, None if isinstance(identity, Refusal) else identity.tier)

    def usable(self, name: ToolName) -> bool:
        operation = CATALOGUE[name]
        if operation.price is not None and self._state.gate.takes_payments:
            return True
        return self._tier is not None and self._tier.includes(operation.tier)

    def locked(self, name: ToolName) -> str:
        needed = CATALOGUE[name].tier.value
        where = self._state.settings.site.upgrade_url
        return f"{name.value} needs the {needed} tier" + (f"; upgrade at {where}" if where else "")

"""The catalogue as MCP tools: how each operation is listed, called and answered.

A tool's input schema is its operation's query model (plus the two transfer-payment arguments
when paying by Solana transfer is on); its output schema admits every shape the tool can put in
``structuredContent``: the answer, a problem (refused or failed, with one sentence saying what
to do), and with x402 on, an x402 PaymentRequired. Some hosts pass only ``structuredContent`` to
the model, and the TypeScript SDK clients check it against the output schema even on errors.
"""

import copy
import functools
import json
from typing import Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from mcp_types import Tool as MCPTool
from pydantic import BaseModel, Field

from kamiyo.access.gate import Refusal, RefusalReason, identified
from kamiyo.mcpserver.wire import (
    BUNDLE_ARGUMENTS,
    PRICE_KEY,
    RECEIPT_KEY,
    TRANSFER_ARGUMENTS,
    BundleArguments,
    TransferArguments,
    payment_in_meta,
)
from kamiyo.payments.bundles import BUNDLE_FIELD, BundleAsk, BundleState
from kamiyo.payments.outcomes import Payment
from kamiyo.payments.prices import tool_price
from kamiyo.payments.transfer_desk import name_the_claim
from kamiyo.service.answers import Answer, Failure, FailureKind, Outcome
from kamiyo.service.arguments import parse_query
from kamiyo.service.catalogue import CATALOGUE, Operation, ToolName
from kamiyo.service.offers import answer_model
from kamiyo.service.pipeline import Caller, execute, execute_unknown
from kamiyo.service.state import ServerState
from kamiyo.service.terms import terms


class Problem(BaseModel):
    """What a refused or failed call puts in ``structuredContent``."""

    error: str = Field(
        description="What stopped the call: "
        + ", ".join(r.value for r in RefusalReason)
        + ", "
        + ", ".join(k.value for k in FailureKind)
        + "."
    )
    message: str = Field(description="One sentence: what happened and what to do next.")
    retry_after_seconds: int | None = None
    required_tier: str | None = Field(default=None, description="The tier that unlocks it.")
    current_tier: str | None = None
    limit: str | None = Field(default=None, description="The limit reached, e.g. per minute.")
    limit_value: int | None = None


# x402 v2 PaymentRequired, as loose as x402 clients are strict: they parse it themselves.
PAYMENT_REQUIRED_SCHEMA: dict[str, Any] = {
    "title": "PaymentRequired",
    "description": "x402 v2: pay for this call with one of the offers in accepts, then call "
    "again with the signed payment in _meta['x402/payment']. message says it in words.",
    "type": "object",
    "properties": {
        "x402Version": {"type": "integer"},
        "error": {"type": "string"},
        "message": {"type": "string"},
        "resource": {"type": "object"},
        "accepts": {"type": "array", "items": {"type": "object"}},
        "extensions": {"type": "object"},
    },
    "required": ["x402Version", "accepts", "message"],
}


@functools.cache
def _generated_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, a copy the caller may change. Generated once per process:
    pydantic generates it anew on every call (~1 ms for an answer), and a server lists 14 tools
    with 3-4 schemas each, Problem's and BundleState's in every one; the suite builds hundreds
    of servers."""
    return copy.deepcopy(_generated_schema(model))


def output_schema(operation: Operation[Any, Any], payments: bool) -> dict[str, Any]:
    answer = schema_of(answer_model(operation, payments))
    problem = schema_of(Problem)
    defs = answer.pop("$defs", {}) | problem.pop("$defs", {})
    if payments and operation.price is not None:  # a paid answer tells its bundle, if any
        bundle = schema_of(BundleState)
        answer.setdefault("properties", {})[BUNDLE_FIELD] = bundle
    branches = [answer, problem, *([PAYMENT_REQUIRED_SCHEMA] if payments else [])]
    schema: dict[str, Any] = {"type": "object", "anyOf": branches}
    if defs:
        schema["$defs"] = defs
    return schema


def input_schema(
    operation: Operation[Any, Any], transfers: bool, payments: bool = False
) -> dict[str, Any]:
    schema = schema_of(operation.query)
    schema.setdefault("properties", {})
    if payments and operation.price is not None and operation.price.packs:
        extra = schema_of(BundleArguments)["properties"]
        schema["properties"] = schema["properties"] | extra
    if transfers:
        extra = schema_of(TransferArguments)["properties"]
        schema["properties"] = schema["properties"] | extra
    return schema


def listed(operation: Operation[Any, Any], state: ServerState) -> MCPTool:
    """How ``tools/list`` shows an operation; with x402 on, its price is in the description
    and in ``_meta`` so an agent knows the cost before it calls."""
    gate = state.gate
    description, meta = operation.description, None
    description += " " + terms(operation, gate.takes_payments)
    if operation.price is not None and gate.takes_payments:
        entry = tool_price(operation.name.value, operation.price).model_dump(mode="json")
        meta = {PRICE_KEY: entry | {"asset": "USDC", "decimals": 6}}
    return MCPTool(
        name=operation.name.value,
        title=operation.title,
        description=description,
        input_schema=input_schema(operation, gate.takes_transfers, gate.takes_payments),
        output_schema=output_schema(operation, gate.takes_payments),
        annotations=ToolAnnotations(
            read_only_hint=not operation.writes,
            # Meaningful only for tools that write (the MCP spec's default is true).
            destructive_hint=operation.destructive if operation.writes else None,
            # Answers about the caller count against the limits they report.
            idempotent_hint=operation.cached,
            open_world_hint=False,
        ),
        _meta=meta,
    )


async def call(
    state: ServerState,
    operation: Operation[Any, Any],
    arguments: dict[str, Any],
    ctx: Context[Any] | None,
) -> CallToolResult:
    name = operation.name.value
    given = dict(arguments)
    transfer, refused = None, None
    if state.gate.takes_transfers:
        paid_with = {arg: given.pop(arg) for arg in TRANSFER_ARGUMENTS if arg in given}
        claimed = parse_query(name, TransferArguments, paid_with)
        if isinstance(claimed, Failure):
            refused = claimed
        else:
            transfer = claimed.claim()
    meta = ctx.request_context.meta if ctx is not None else None
    bundle: BundleAsk | None = None
    if state.gate.takes_payments and operation.price is not None and operation.price.packs:
        asked = {arg: given.pop(arg) for arg in BUNDLE_ARGUMENTS if arg in given}
        parsed = parse_query(name, BundleArguments, asked)
        if isinstance(parsed, Failure):
            refused = refused or parsed
        else:
            bundle = parsed.ask(meta)
    query = refused or parse_query(name, operation.query, given)
    caller = caller_of(ctx, state, payment_in_meta(meta) or transfer, bundle)
    return result_of(await execute(state, operation, query, caller), operation, state)


async def call_unknown(
    state: ServerState, message: str, ctx: Context[Any] | None
) -> CallToolResult:
    """A call naming no tool: a tool error the agent can correct, counted like bad arguments."""
    failure = Failure(FailureKind.INVALID_ARGUMENTS, message)
    return result_of(await execute_unknown(state, failure, caller_of(ctx, state)))


def caller_of(
    ctx: Context[Any] | None,
    state: ServerState,
    payment: Payment | None = None,
    bundle: BundleAsk | None = None,
) -> Caller:
    credential = credential_of(ctx, state)
    request = ctx.request_context.request if ctx is not None else None
    scope = getattr(request, "scope", None)
    return Caller(
        credential=credential,
        payment=payment,
        bundle=bundle,
        peer=peer_of(ctx),
        identity=identified(scope.get("state") if isinstance(scope, dict) else None, credential),
        # The SDK sends notifications/progress only when the request carried a progressToken.
        progress=ctx.report_progress if ctx is not None else None,
    )


def result_of(
    outcome: Outcome,
    operation: Operation[Any, Any] | None = None,
    state: ServerState | None = None,
) -> CallToolResult:
    if isinstance(outcome, Answer):
        receipt = outcome.receipt
        return CallToolResult(
            content=[TextContent(type="text", text=outcome.text)],
            structured_content=outcome.structured,
            meta={RECEIPT_KEY: receipt.model_dump(mode="json", exclude_none=True)}
            if receipt is not None
            else None,
        )
    return problem_result(outcome, operation, state)


def problem_result(
    problem: Refusal | Failure,
    operation: Operation[Any, Any] | None = None,
    state: ServerState | None = None,
) -> CallToolResult:
    if isinstance(problem, Refusal) and problem.payment_required is not None:
        return payment_required_result(problem, operation, state)
    if isinstance(problem, Refusal):
        body = Problem(error=problem.reason.value, message=problem.message, **problem.details())
    else:
        body = Problem(error=problem.kind.value, message=problem.message)
    return CallToolResult(
        content=[TextContent(type="text", text=problem.message)],
        structured_content=body.model_dump(mode="json", exclude_none=True),
        is_error=True,
    )


def payment_required_result(
    refusal: Refusal,
    operation: Operation[Any, Any] | None = None,
    state: ServerState | None = None,
) -> CallToolResult:
    """x402 over MCP: PaymentRequired as structuredContent and as the first text, then the
    sentence for clients (and LLMs) that cannot pay; the sentence is in the object too. It
    lists the tool for x402 directories (the Bazaar extension, service/discovery.py) and says
    which arguments claim a Solana transfer."""
    assert refusal.payment_required is not None
    required = refusal.payment_required.model_dump(mode="json", exclude_none=True)
    if operation is not None:
        from kamiyo.service.discovery import listed  # x402's Bazaar: only a priced call's

        transfers = state is not None and state.gate.takes_transfers
        listed(required, operation.name, _listing(operation.name, transfers))
    signature, reference = TRANSFER_ARGUMENTS
    required["message"] = name_the_claim(
        required, refusal.message, "arguments", signature, reference
    )
    return CallToolResult(
        content=[
            TextContent(type="text", text=json.dumps(required, separators=(",", ":"))),
            TextContent(type="text", text=required["message"]),
        ],
        structured_content=required,
        is_error=True,
    )


@functools.cache
def _listing(name: ToolName, transfers: bool) -> dict[str, Any]:
    """A tool's Bazaar declaration: the same for every call of it on this server."""
    from kamiyo.service.discovery import mcp_extension

    return mcp_extension(name, input_schema(CATALOGUE[name], transfers), None)


def peer_of(ctx: Context[Any] | None) -> str:
    """The client's address on HTTP; "local" on stdio (one user, the one who started us)."""
    request = ctx.request_context.request if ctx is not None else None
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    return host if isinstance(host, str) else "local"


def credential_of(ctx: Context[Any] | None, state: ServerState) -> str | None:
    """The bearer credential of an HTTP request, else the one stdio started with."""
    headers = ctx.headers if ctx is not None else None
    if headers is not None:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    return state.stdio_credential

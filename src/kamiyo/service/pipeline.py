"""One call, end to end: admit -> run with the grant's scope -> complete (settle, meter).

Every surface builds a ``Caller``, parses the arguments into the operation's query
(``arguments.parse_query``) and calls ``execute`` with what came of it, query or ``Failure``;
none checks tiers, limits or payments itself, and none answers bad arguments on its own: a
call with bad arguments, or naming no operation at all, is still counted against the caller's
limits and recorded (status invalid), so it cannot be made without limit. An expected failure
(bad arguments, not found) becomes a ``Failure`` whose sentence says what to change; an
unexpected one is logged with its traceback and reaches the caller only as a short notice. A
database that cannot be reached is one outage in the log (``kamiyo.outages``), and each call it
stops is answered temporarily unavailable and metered. Nothing is charged for a failed call.
"""

import json
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from kamiyo import outages
from kamiyo.access.gate import LOCAL_PEER, Call, Grant, Identity, Refusal, Replayed, Target
from kamiyo.db.engine import read_retrying
from kamiyo.errors import describe_validation_error
from kamiyo.intel import IncidentList, NotFoundError
from kamiyo.payments.bundles import BUNDLE_FIELD, BundleAsk
from kamiyo.service.answers import Answer, Failure, FailureKind, Outcome, count_results
from kamiyo.service.catalogue import Operation
from kamiyo.service.offers import OFFER_FIELD, paid_offer
from kamiyo.service.state import Job, Progress, ServerState
from kamiyo.tiers import TIERS, Tier, next_tier_above

if TYPE_CHECKING:  # the payment checks (solders, x402) load only where payments are taken
    from kamiyo.payments.outcomes import Payment

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and how, as the surface found it."""

    credential: str | None = None
    payment: "Payment | None" = None
    # Pay from a bundle of prepaid calls, or buy one.
    bundle: BundleAsk | None = None
    # What x402 names the thing paid for (the REST URL); None: mcp://tool/<name>.
    resource: str | None = None
    peer: str = LOCAL_PEER
    # Where a long call reports progress (MCP: the client's progressToken), if anywhere.
    progress: Progress | None = None
    # Whether the answer should say where the caller's rate limits stand (REST headers).
    limits_wanted: bool = False
    # Who ``credential`` is, when the surface already found out (``Call.identity``).
    identity: Identity | None = None


Work = Callable[[Job], Awaitable[BaseModel]]

# What a call naming no operation is counted and recorded under (never the name it gave).
UNKNOWN_OPERATION = Target("(unknown)")


async def execute(
    state: ServerState,
    operation: Operation[Any, Any],
    query: BaseModel | Failure,
    caller: Caller,
) -> Outcome:
    """Run one operation for ``caller``; ``query`` is what ``parse_query`` made of the
    arguments, and a ``Failure`` there is counted before it is answered."""
    name = operation.name.value
    call = _call(operation.target, caller, getattr(query, "limit", None))
    if isinstance(query, Failure):
        return await _count_invalid(state, call, query)

    async def work(job: Job) -> BaseModel:
        return _with_cap_note(await operation.run(job, query), query, job.grant)

    key = (name, query) if operation.cached else None
    return await run_call(
        state, call, work, key, progress=caller.progress, read_only=not operation.writes
    )


async def execute_unknown(state: ServerState, failure: Failure, caller: Caller) -> Outcome:
    """A call naming no operation: counted and recorded like one with bad arguments."""
    return await _count_invalid(state, _call(UNKNOWN_OPERATION, caller), failure)


def _call(target: Target, caller: Caller, size: int | None = None) -> Call:
    return Call(
        target=target,
        credential=caller.credential,
        size=size,
        payment=caller.payment,
        bundle=caller.bundle,
        resource=caller.resource or f"mcp://tool/{target.name}",
        peer=caller.peer,
        limits_wanted=caller.limits_wanted,
        identity=caller.identity,
    )


async def _count_invalid(state: ServerState, call: Call, failure: Failure) -> Outcome:
    """The arguments' error, once the gate has counted the call; or the refusal that wins."""
    name = call.target.name
    try:
        refusal = await state.gate.count_invalid(call)
    except Exception as exc:
        return _gate_failed(state, call, exc)
    if refusal is not None:
        log.info("%s refused: %s", name, refusal.reason.value)
        return refusal
    return failure


async def run_call(
    state: ServerState,
    call: Call,
    work: Work,
    cache_key: Hashable | None = None,
    *,
    progress: Progress | None = None,
    read_only: bool = False,
) -> Outcome:
    """Admit ``call``, run ``work`` in a database session with the grant, complete.

    ``cache_key`` lets an identical call with the same caps be answered from the cache; it is
    still admitted and completed (metered, paid) like any other. ``read_only`` work gets a
    session that begins no transaction where that saves round trips (``read_sessions``).
    """
    name = call.target.name
    try:
        admission = await state.gate.admit(call)
    except Exception as exc:
        return _gate_failed(state, call, exc)
    if isinstance(admission, Refusal):
        log.info("%s refused: %s", name, admission.reason.value)
        return admission
    if isinstance(admission, Replayed):
        replayed = Answer(admission.answer, _json(admission.answer), admission.receipt)
        return _with_field(replayed, BUNDLE_FIELD, admission.bundle)
    key = None
    if cache_key is not None and state.cache is not None:
        grant = admission
        key = (cache_key, grant.max_results, grant.hide_after, grant.detailed_risk, grant.tier)
        if (cached := state.cache.get(key)) is not None:
            return await _finish(state, call, admission, cached)
    try:
        if read_only:  # a connection lost since its last use is replaced, and read again
            model = await read_retrying(
                state.read_sessions(),
                lambda session: work(Job(state, session, admission, progress)),
            )
        else:
            async with state.require_runtime().sessions() as session:
                model = await work(Job(state, session, admission, progress))
        answer = Answer.of(model)
    except (ValidationError, NotFoundError) as exc:
        await state.gate.complete(
            call, admission, "invalid" if isinstance(exc, ValidationError) else "error"
        )
        return _expected_failure(name, exc)
    except Exception as exc:
        if outages.is_unreachable(exc):  # the database went away mid-call: an outage, not a bug
            outages.DATABASE.failed(exc)
            await state.gate.complete(call, admission, "unavailable")
            return _unavailable(name)
        log.exception("%s failed", name)
        await state.gate.complete(call, admission, "error")
        return Failure(
            FailureKind.INTERNAL, f"{name} failed on the server; the error was logged. Try later."
        )
    if key is not None and state.cache is not None:
        state.cache[key] = answer
    return await _finish(state, call, admission, answer)


def _gate_failed(state: ServerState, call: Call, exc: Exception) -> Failure:
    """The gate could not decide (admit, or count an invalid call): refuse, and meter it."""
    if outages.is_unreachable(exc):  # its database is down: one outage, not a traceback a call
        outages.DATABASE.failed(exc)
    else:
        log.exception("gate failed for %s", call.target.name)
    state.gate.record_unavailable(call)
    return _unavailable(call.target.name)


async def _finish(state: ServerState, call: Call, grant: Grant, answer: Answer) -> Outcome:
    """Complete the call (settle its payment, meter it) and hand over the answer, or withhold
    it when its payment did not settle."""
    # Kept with its payment, to answer a retry of that payment.
    kept = (answer.replay or answer.structured) if grant.payment is not None else None
    completed = await state.gate.complete(call, grant, "ok", count_results(answer.structured), kept)
    if isinstance(completed, Refusal):
        log.info("%s answer withheld: %s", call.target.name, completed.reason.value)
        return completed
    if not (completed.receipt or completed.bundle or grant.limits or grant.offer):
        return answer
    # A copy: the cached answer stays free of one caller's receipt, limits, bundle and offer.
    answer = replace(answer, receipt=completed.receipt, limits=grant.limits)
    if grant.offer is not None:
        offer = paid_offer(grant.offer, state.settings.site.upgrade_url)
        answer = _with_field(answer, OFFER_FIELD, offer)
    return _with_field(answer, BUNDLE_FIELD, completed.bundle)


def _with_field(answer: Answer, name: str, value: BaseModel | None) -> Answer:
    """The answer with one more field on every surface (structuredContent, its text, REST's
    body): the bundle that paid for it, or what paying would add. Agents that read only
    structuredContent see it there."""
    if value is None:
        return answer
    structured = answer.structured | {name: value.model_dump(mode="json")}
    return replace(answer, structured=structured, text=_json(structured))


def _unavailable(name: str) -> Failure:
    return Failure(
        FailureKind.UNAVAILABLE, f"{name} is temporarily unavailable; try again shortly."
    )


def _expected_failure(name: str, exc: Exception) -> Failure:
    if isinstance(exc, NotFoundError):
        return Failure(FailureKind.NOT_FOUND, str(exc))
    detail = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
    return Failure(FailureKind.INVALID_ARGUMENTS, f"Invalid arguments for {name}: {detail}")


def _with_cap_note(result: BaseModel, query: BaseModel, grant: Grant) -> BaseModel:
    """Say so in the answer when the caller's plan, not their ``limit``, cut a list short."""
    asked = getattr(query, "limit", None)
    if not (isinstance(result, IncidentList) and result.truncated and isinstance(asked, int)):
        return result
    if asked <= result.limit:
        return result  # the caller's own limit: nothing to raise but the limit itself
    return result.model_copy(update={"note": cap_note(grant, result.limit)})


def cap_note(grant: Grant, cap: int) -> str:
    shown = f"Showing the first {cap}; more match, but "
    if grant.tier in {t.value for t in Tier}:
        tier = Tier(grant.tier)
        better = next_tier_above(tier, cap)
        raise_it = (
            f" The {better.value} tier returns up to {TIERS[better].max_results}; upgrade to "
            "see more, or narrow the search with filters."
            if better
            else " Narrow the search with filters (since, chain, attack_type) to see the rest."
        )
        return f"{shown}the {tier.value} tier returns at most {cap} results a call.{raise_it}"
    return (
        f"{shown}this server returns at most {cap} results a call (paid calls and the server's "
        "own cap). Narrow the search with filters, or subscribe for a higher cap."
    )


def _json(structured: dict[str, Any]) -> str:
    return json.dumps(structured, separators=(",", ":"), ensure_ascii=False)

"""The catalogue over REST: one route per operation that declares one, through the same
pipeline, gate and answers as the MCP tools.

- Path parameters and query parameters (a POST: the JSON body's fields) are the operation's
  query fields, checked by its model; unknown parameters are refused so a typo is not silently
  ignored. A body that is not a JSON object is bad arguments like any other (400, counted); one
  over ``MAX_BODY_BYTES`` is refused with 413 before it is read in full.
- Every error is the one envelope of web/errors.py: ``{"error": {"code", "message", "details"}}``.
- Credentials as on the MCP endpoints (``Authorization: Bearer``, 401 challenges). Payments as
  x402 v2 over HTTP: an unpaid call to a priced endpoint gets ``402`` with ``PAYMENT-REQUIRED``
  (base64 JSON); the retry carries ``PAYMENT-SIGNATURE`` (v1: ``X-PAYMENT``); the answer
  carries ``PAYMENT-RESPONSE``. A client that pays with ``X-PAYMENT`` is answered in x402 v1:
  the receipt under ``X-PAYMENT-RESPONSE``, and a 402 body that is v1's PaymentRequired. The
  402 body speaks the request's version: v2 to a ``PAYMENT-SIGNATURE``, v1 otherwise (a first,
  unpaid request may come from either, and v2 clients read the ``PAYMENT-REQUIRED`` header,
  which is always v2). Every 402 lists the operation for x402 directories (service/discovery).
- A plain Solana transfer is claimed with ``KAMIYO-Transfer-Signature`` and
  ``KAMIYO-Transfer-Reference`` (web/wire.py); a header too long to be one is bad arguments.
- An answer and a 429 say where the caller's rate limits stand in the IETF ``RateLimit-Policy``
  and ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers, structured-field lists):
  ``"minute";q=60;w=60, "day";q=1000;w=86400`` and ``"minute";r=12;t=40, "day";r=990;t=3600``
  (a 429 names the limit it reached). A 429 keeps ``Retry-After``.
"""

from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, request_response

from kamiyo.access.gate import LimitState, Refusal, RefusalReason, identified
from kamiyo.service.answers import Answer, Failure, FailureKind, Outcome
from kamiyo.service.arguments import parse_query
from kamiyo.service.catalogue import OPERATIONS, Operation
from kamiyo.service.pipeline import Caller, execute
from kamiyo.service.state import ServerState
from kamiyo.web.api import ApiError, read_json
from kamiyo.web.auth import BearerGuard, ResourceServer
from kamiyo.web.errors import error_response
from kamiyo.web.payment_answers import payment_required_response, receipt_headers
from kamiyo.web.wire import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    REQUEST_HEADERS,
    V1_PAYMENT_RESPONSE_HEADER,
    BadTransferHeaderError,
    SentPayment,
    bundle_in_headers,
    sent_payment,
)

# Browser clients may read these only when they are exposed.
EXPOSED = (
    f"{PAYMENT_REQUIRED_HEADER}, {PAYMENT_RESPONSE_HEADER}, {V1_PAYMENT_RESPONSE_HEADER}, "
    "Retry-After, WWW-Authenticate, RateLimit, RateLimit-Policy"
)
REFUSAL_STATUS = {
    RefusalReason.UNAUTHENTICATED: 401,
    RefusalReason.FORBIDDEN: 403,
    RefusalReason.RATE_LIMITED: 429,
    RefusalReason.UNAVAILABLE: 503,
    RefusalReason.PAYMENT_REQUIRED: 402,
}
FAILURE_STATUS = {
    FailureKind.INVALID_ARGUMENTS: 400,
    FailureKind.NOT_FOUND: 404,
    FailureKind.INTERNAL: 500,
    FailureKind.UNAVAILABLE: 503,
}


def routes(state: ServerState, resource: ResourceServer) -> list[BaseRoute]:
    guard = BearerGuard.checker(resource, envelope=True)
    origins = state.settings.site.cors_origins
    found: list[BaseRoute] = []
    for op in OPERATIONS:
        if op.rest is None:
            continue
        endpoint = _endpoint(state, guard, op)
        if not origins:  # no page on another origin may call: browsers refuse to read answers
            found.append(Route(op.rest.path, endpoint, methods=[op.rest.method]))
            continue
        # Credentials are bearer headers, never cookies: no origin gets allow-credentials.
        app = CORSMiddleware(
            request_response(endpoint),
            allow_origins=origins,
            allow_methods=[op.rest.method],
            allow_headers=REQUEST_HEADERS,
            max_age=600,
        )
        found.append(Route(op.rest.path, app, methods=[op.rest.method, "OPTIONS"]))
    return found


def _endpoint(state: ServerState, guard: BearerGuard, operation: Operation[Any, Any]) -> Any:
    name = operation.name.value

    async def endpoint(request: Request) -> Response:
        refused = await guard.refusal(request.scope)
        if refused is not None:
            return refused
        given: dict[str, Any] = dict(request.query_params)
        body: dict[str, Any] | Failure = {}
        if request.method == "POST":
            try:
                body = await read_json(request)
            except ApiError as exc:
                if exc.status == 413:  # refused before it was read: nothing to count
                    return exc.response()
                problem = f"Invalid arguments for {name}: {exc.description}"
                body = Failure(FailureKind.INVALID_ARGUMENTS, problem)
        if isinstance(body, dict):
            given.update(body)
        given.update(request.path_params)  # the path names the thing; it wins over a parameter
        try:
            sent = sent_payment(request.headers)
        except BadTransferHeaderError as exc:
            sent = SentPayment(None, None)
            body = Failure(FailureKind.INVALID_ARGUMENTS, f"Invalid payment for {name}: {exc}.")
        # A Failure is counted all the same.
        query = body if isinstance(body, Failure) else parse_query(name, operation.query, given)
        bundle = bundle_in_headers(request.headers)
        if isinstance(bundle, str):
            query = Failure(
                FailureKind.INVALID_ARGUMENTS, f"Invalid arguments for {name}: {bundle}"
            )
            bundle = None
        scheme, _, sent_credential = request.headers.get("authorization", "").partition(" ")
        credential = sent_credential.strip() or None if scheme.lower() == "bearer" else None
        caller = Caller(
            credential=credential,
            identity=identified(request.scope.get("state"), credential),
            payment=sent.payment,
            bundle=bundle,
            resource=str(request.url),
            peer=request.client.host if request.client else "local",
            limits_wanted=True,
        )
        return render(await execute(state, operation, query, caller), operation, sent.version)

    endpoint.__name__ = name
    return endpoint


def render(outcome: Outcome, operation: Operation[Any, Any], version: int | None) -> Response:
    """The HTTP answer to ``outcome``; ``version``: the x402 version the request paid in."""
    headers = {"Access-Control-Expose-Headers": EXPOSED}
    if isinstance(outcome, Answer):
        headers |= rate_limit_headers(outcome.limits)
        if outcome.receipt is not None:
            headers |= receipt_headers(outcome.receipt, version)
        return JSONResponse(outcome.structured, headers=headers)
    if isinstance(outcome, Failure):
        status = FAILURE_STATUS[outcome.kind]
        return error_response(status, outcome.kind.value, outcome.message, headers=headers)
    return _refused(outcome, headers, operation, version)


def _refused(
    refusal: Refusal, headers: dict[str, str], operation: Operation[Any, Any], version: int | None
) -> Response:
    if refusal.payment_required is not None:
        return payment_required_response(refusal, operation.name, version, headers)
    if refusal.retry_after_s is not None:
        headers["Retry-After"] = str(refusal.retry_after_s)
    headers |= rate_limit_headers(refusal.limits)
    status = REFUSAL_STATUS[refusal.reason]
    return error_response(
        status, refusal.reason.value, refusal.message, refusal.details(), headers=headers
    )


def rate_limit_headers(limits: tuple[LimitState, ...]) -> dict[str, str]:
    """The IETF RateLimit fields for these limits (none when the gate reported none)."""
    if not limits:
        return {}
    return {
        "RateLimit-Policy": ", ".join(f'"{s.policy}";q={s.quota};w={s.window_s}' for s in limits),
        "RateLimit": ", ".join(f'"{s.policy}";r={s.remaining};t={s.reset_s}' for s in limits),
    }

"""The intelligence over REST, through the same gate and the same answers as the MCP tools.

- ``GET /api/v1/exploits`` (search_exploits), ``/api/v1/exploits/{id}`` (get_exploit),
  ``/api/v1/risk/{protocol}`` (assess_protocol_risk), ``/api/v1/wallets/{address}``
  (check_wallet_interactions), ``/api/v1/stats`` (get_exploit_stats).
- Credentials as on the MCP endpoints (``Authorization: Bearer``, 401 challenges). Payments as
  x402 v2 over HTTP: an unpaid call to a priced endpoint gets ``402`` with ``PAYMENT-REQUIRED``
  (base64 JSON); the retry carries ``PAYMENT-SIGNATURE`` (v1: ``X-PAYMENT``); the answer carries
  ``PAYMENT-RESPONSE``. Query parameters are checked against one model per endpoint; unknown
  ones are refused so a typo is not silently ignored.
"""

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kamiyo import intel
from kamiyo.access.gate import Call, Grant, Refusal
from kamiyo.errors import describe_validation_error
from kamiyo.intel.vocabulary import AttackType
from kamiyo.mcpserver import answers
from kamiyo.mcpserver.calls import Answer, Failure, ServerState, execute
from kamiyo.payments.wire import (
    MCP_RECEIPT_KEY,
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    encode_header,
    payment_in_headers,
)
from kamiyo.web.auth import BearerGuard, ResourceServer

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)
# Browser clients may read these only when they are exposed.
EXPOSED = f"{PAYMENT_REQUIRED_HEADER}, {PAYMENT_RESPONSE_HEADER}, Retry-After, WWW-Authenticate"
FAILURE_ERRORS = {400: "invalid_request", 500: "internal_error", 503: "temporarily_unavailable"}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchParams(Params):
    query: str | None = Field(default=None, max_length=256)
    chain: str | None = Field(default=None, max_length=40)
    since: dt.date | None = None
    until: dt.date | None = None
    min_loss_usd: float | None = Field(default=None, ge=0)
    attack_type: AttackType | None = None
    sort: intel.SortOrder | None = None
    limit: int = Field(default=10, ge=1, le=1000)


class StatsParams(Params):
    group_by: intel.StatsGroup = intel.StatsGroup.YEAR
    since: dt.date | None = None
    until: dt.date | None = None
    chain: str | None = Field(default=None, max_length=40)


class ChainParams(Params):
    chain: str | None = Field(default=None, max_length=40)


class IntelApi:
    def __init__(self, state: ServerState, resource: ResourceServer) -> None:
        self.state = state
        self.guard = BearerGuard.checker(resource)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/exploits", self.search, methods=["GET"]),
            Route("/api/v1/exploits/{exploit_id}", self.exploit, methods=["GET"]),
            Route("/api/v1/risk/{protocol}", self.risk, methods=["GET"]),
            Route("/api/v1/wallets/{address}", self.wallet, methods=["GET"]),
            Route("/api/v1/stats", self.stats, methods=["GET"]),
        ]

    async def search(self, request: Request) -> Response:
        async def run(params: SearchParams) -> Response:
            async def work(grant: Grant, session: AsyncSession) -> BaseModel:
                return await answers.search(grant, session, **params.model_dump())

            return await self._gated(request, "search_exploits", work, params, params.limit)

        return await self._with_params(request, SearchParams, run)

    async def exploit(self, request: Request) -> Response:
        exploit_id = request.path_params["exploit_id"]

        async def run(params: Params) -> Response:
            async def work(grant: Grant, session: AsyncSession) -> BaseModel:
                return await answers.exploit(grant, session, exploit_id)

            return await self._gated(request, "get_exploit", work, exploit_id)

        return await self._with_params(request, Params, run)

    async def risk(self, request: Request) -> Response:
        protocol = request.path_params["protocol"]

        async def run(params: ChainParams) -> Response:
            async def work(grant: Grant, session: AsyncSession) -> BaseModel:
                return await answers.protocol_risk(
                    grant, session, protocol_name=protocol, chain=params.chain
                )

            return await self._gated(request, "assess_protocol_risk", work, (protocol, params))

        return await self._with_params(request, ChainParams, run)

    async def wallet(self, request: Request) -> Response:
        address = request.path_params["address"]

        async def run(params: ChainParams) -> Response:
            async def work(grant: Grant, session: AsyncSession) -> BaseModel:
                return await answers.wallet_screen(
                    grant, session, wallet_address=address, chain=params.chain
                )

            key = (address, params)
            return await self._gated(request, "check_wallet_interactions", work, key)

        return await self._with_params(request, ChainParams, run)

    async def stats(self, request: Request) -> Response:
        async def run(params: StatsParams) -> Response:
            async def work(grant: Grant, session: AsyncSession) -> BaseModel:
                return await answers.stats(grant, session, **params.model_dump())

            return await self._gated(request, "get_exploit_stats", work, params)

        return await self._with_params(request, StatsParams, run)

    async def _with_params(
        self,
        request: Request,
        model: type[P],
        run: Callable[[P], Awaitable[Response]],
    ) -> Response:
        refused = await self.guard.refusal(request.scope)
        if refused is not None:
            return refused
        try:
            params = model.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return _error(400, "invalid_request", describe_validation_error(exc))
        return await run(params)

    async def _gated(
        self,
        request: Request,
        tool: str,
        work: Callable[[Grant, AsyncSession], Awaitable[BaseModel]],
        cache_key: Hashable,
        limit: int | None = None,
    ) -> Response:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        call = Call(
            tool=tool,
            credential=credential.strip() or None if scheme.lower() == "bearer" else None,
            arguments={"limit": limit} if limit is not None else {},
            payment=payment_in_headers(request.headers),
            resource=str(request.url),
            peer=request.client.host if request.client else "local",
        )
        outcome = await execute(self.state, call, work, cache_key)
        if isinstance(outcome, Answer):
            return _answer(outcome)
        if isinstance(outcome, Failure):
            error = FAILURE_ERRORS.get(outcome.http_status, "error")
            return _error(outcome.http_status, error, outcome.message)
        return _refused(outcome)


def _answer(answer: Answer) -> Response:
    headers = {"Access-Control-Expose-Headers": EXPOSED}
    receipt = answer.meta.get(MCP_RECEIPT_KEY)
    if isinstance(receipt, Mapping):
        headers[PAYMENT_RESPONSE_HEADER] = encode_header(receipt)
    return JSONResponse(answer.rendered[0], headers=headers)


def _refused(refusal: Refusal) -> Response:
    headers = {"Access-Control-Expose-Headers": EXPOSED}
    if refusal.reason == "payment_required":
        required: dict[str, Any] = refusal.details["x402"]
        headers[PAYMENT_REQUIRED_HEADER] = encode_header(required)
        # The body repeats it for v1 clients, which read PaymentRequired from the body.
        return JSONResponse(required | {"message": refusal.message}, 402, headers=headers)
    if refusal.retry_after_s is not None:
        headers["Retry-After"] = str(refusal.retry_after_s)
    body = {"error": refusal.reason, "error_description": refusal.message, **refusal.details}
    return JSONResponse(body, refusal.http_status, headers=headers)


def _error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status)


def routes(state: ServerState, resource: ResourceServer) -> list[BaseRoute]:
    return IntelApi(state, resource).routes()

"""The one error envelope of the REST API: ``{"error": {"code", "message", "details"}}``.

Every REST error (catalogue routes and the account routes) is rendered here, so a client reads
one shape: ``code`` is a stable machine word, ``message`` one sentence saying what to do, and
``details`` the machine-readable facts behind it (the tier that unlocks an operation, the limit
reached). The OpenAPI document describes the same models.

The x402 402 answer is the exception in shape, not in content: x402 clients parse the body as a
PaymentRequired, whose ``error`` is a string, so there the envelope rides beside it under
``problem`` (see ``payment_required_body``).
"""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from kamiyo.observability.request_context import current_request_id


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, as a stable word: e.g. forbidden, not_found.")
    message: str = Field(description="One sentence: what happened and what to do next.")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Machine-readable facts: retry_after_seconds, required_tier, "
        "current_tier, limit, limit_value, where they apply.",
    )
    request_id: str | None = Field(
        default=None,
        description="The request's id, as in its X-Request-ID answer header: quote it when "
        "asking about this error.",
    )


class ErrorEnvelope(BaseModel):
    """Every REST error's body."""

    error: ErrorDetail


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message, "details": dict(details or {})}
    if (request_id := current_request_id()) is not None:  # always, when served over HTTP
        error["request_id"] = request_id
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status, headers=headers)


def payment_required_body(
    required: Mapping[str, Any], message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """x402's PaymentRequired at the top level (v1 clients read it from the body, and its
    ``error`` must stay a string for their parsers), ``message``, and the envelope."""
    problem = error_body("payment_required", message, details)["error"]
    return dict(required) | {"message": message, "problem": problem}

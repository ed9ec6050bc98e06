"""The OpenAPI 3.1 document of the REST API, generated from the catalogue.

Each operation with a REST route becomes one path item: its path and query parameters (a POST:
the JSON body) from its query model's JSON schema, its 200 answer from its output model, its
price and lowest tier in the description and in ``x-kamiyo-price`` / ``x-kamiyo-tier``, and the
errors every route may answer, all in the one envelope (web/errors.py). The account and billing
routes of web/api.py are not catalogue operations, so ``ACCOUNT_ROUTES`` describes them by hand.

Pydantic writes the schemas (``$defs`` collected into ``components/schemas``); nothing here
repeats a field. The document is built once per process: the catalogue does not change.
"""

import copy
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from kamiyo import __version__
from kamiyo.payments.transfer_desk import TRANSFER_EXTENSION
from kamiyo.service.catalogue import OPERATIONS, Operation
from kamiyo.service.offers import answer_model
from kamiyo.web.errors import ErrorEnvelope
from kamiyo.web.openapi_examples import EXAMPLES
from kamiyo.web.wire import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    TRANSFER_HEADERS,
    TRANSFER_REFERENCE_HEADER,
    TRANSFER_SIGNATURE_HEADER,
    V1_PAYMENT_HEADER,
    V1_PAYMENT_RESPONSE_HEADER,
)

REF = "#/components/schemas/{model}"
PATH_PARAMETER = re.compile(r"{(\w+)}")
# What each error status means on this API, for every route's responses.
ERRORS = {
    400: "The arguments are wrong; the message names the one to fix.",
    401: "No usable credential (a WWW-Authenticate challenge says where to get one).",
    403: "The caller's tier does not unlock this operation; details name the tier that does.",
    404: "Nothing with that id or name.",
    413: "The body is larger than 64 kB.",
    415: "The body is not JSON.",
    429: "A rate limit was reached; Retry-After says when to call again.",
    503: "Temporarily unavailable (the database or the limits store); retry shortly.",
}
PAYMENT_REQUIRED = (
    "Pay for this call (x402): the PAYMENT-REQUIRED header holds the offers (x402 v2, base64 "
    "JSON, with the listing for x402 directories in resource.description and "
    "extensions.bazaar); sign one and call again with PAYMENT-SIGNATURE. The body is x402 "
    "v1's PaymentRequired (for v1 clients, which pay with X-PAYMENT and get X-PAYMENT-RESPONSE) "
    "unless the request paid with PAYMENT-SIGNATURE, then v2's; either has message and the "
    f"error envelope under problem. A Solana transfer made with the offer's memo (extensions"
    f"['{TRANSFER_EXTENSION}']) is claimed with the {TRANSFER_SIGNATURE_HEADER} and "
    f"{TRANSFER_REFERENCE_HEADER} headers."
)
PAYMENT_HEADERS = (
    (PAYMENT_SIGNATURE_HEADER, "An x402 v2 payment (base64 JSON PaymentPayload).", None),
    (
        V1_PAYMENT_HEADER,
        "An x402 v1 payment (base64 JSON); the receipt is then X-PAYMENT-RESPONSE.",
        None,
    ),
    (
        TRANSFER_SIGNATURE_HEADER,
        "The signature of a USDC transfer made with the memo a 402 gave.",
        TRANSFER_HEADERS[TRANSFER_SIGNATURE_HEADER],
    ),
    (
        TRANSFER_REFERENCE_HEADER,
        "The reference given with that memo.",
        TRANSFER_HEADERS[TRANSFER_REFERENCE_HEADER],
    ),
)
RATE_LIMIT_HEADERS = {
    "RateLimit": {
        "description": "IETF RateLimit (draft-ietf-httpapi-ratelimit-headers): what is left "
        'of the policy that is closest to its limit, e.g. "minute";r=12;t=40.',
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {
        "description": 'The caller\'s limits, e.g. "minute";q=60;w=60, "day";q=1000;w=86400.',
        "schema": {"type": "string"},
    },
}


@dataclass(frozen=True, slots=True)
class AccountRoute:
    """A route of web/api.py, described by hand: it is not a catalogue operation."""

    path: str
    operation_id: str
    summary: str
    description: str
    body: dict[str, Any]
    answer: dict[str, Any]
    status: int = 200
    errors: tuple[int, ...] = (400, 401, 413, 415, 503)
    secured: bool = True
    example: dict[str, Any] = field(default_factory=dict)


URL_ANSWER = {
    "type": "object",
    "properties": {"url": {"type": "string", "format": "uri"}},
    "required": ["url"],
}
ACCOUNT_ROUTES = (
    AccountRoute(
        "/api/v1/signup",
        "signup",
        "Sign up",
        "Always 202 'check your email' for a well-formed address (the answer never tells "
        "whether it had an account): the mail holds a one-time link that shows an API key.",
        {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}},
            "required": ["email"],
        },
        {
            "type": "object",
            "properties": {"status": {"type": "string", "const": "check your email"}},
            "required": ["status"],
        },
        status=202,
        errors=(400, 413, 415, 429, 503),
        secured=False,
        example={"email": "you@example.com"},
    ),
    AccountRoute(
        "/api/v1/billing/checkout",
        "billing_checkout",
        "Start a subscription",
        "A Stripe Checkout URL for the tier asked for. An account that already subscribes "
        "changes plans in the billing portal instead (409).",
        {
            "type": "object",
            "properties": {"tier": {"type": "string", "enum": ["personal", "team", "enterprise"]}},
            "required": ["tier"],
        },
        URL_ANSWER,
        errors=(400, 401, 409, 413, 415, 502, 503),
        example={"tier": "team"},
    ),
    AccountRoute(
        "/api/v1/billing/portal",
        "billing_portal",
        "Manage billing",
        "A single-use Stripe customer portal URL (treat it as a credential). An account that "
        "never paid through Stripe has none yet (409).",
        {"type": "object", "maxProperties": 0},
        URL_ANSWER,
        errors=(400, 401, 409, 413, 415, 502, 503),
    ),
)
ACCOUNT_ERRORS = {
    409: "The account's state does not allow it; the message says what to do instead.",
    502: "Stripe answered with an error; try again.",
}


class _Schemas:
    """``components/schemas`` for every model the document names, made in one pass so that a
    model read in requests and written in answers gets one name per shape (pydantic suffixes
    ``-Input`` / ``-Output`` where they differ)."""

    def __init__(self, models: list[tuple[type[BaseModel], JsonSchemaMode]]) -> None:
        self._refs, defs = models_json_schema(models, ref_template=REF)
        self.components: dict[str, Any] = defs.get("$defs", {})

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(self._refs[(model, mode)])

    def of(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        """The model's own schema (its fields), as listed in the components."""
        name = self.ref(model, mode)["$ref"].rsplit("/", 1)[1]
        schema: dict[str, Any] = self.components[name]
        return schema


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its null branch: a query parameter left out is None."""
    schema = copy.deepcopy(schema)
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if schema.get("default", ...) is None:
        del schema["default"]
    if len(branches) == 1:
        schema = branches[0] | schema
    elif branches:
        schema["anyOf"] = branches
    return schema


def _error_responses(statuses: dict[int, str], envelope: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, description in statuses.items():
        content = {"application/json": {"schema": envelope}}
        answer: dict[str, Any] = {"description": description, "content": content}
        if status == 429:
            answer["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."},
                **RATE_LIMIT_HEADERS,
            }
        answers[str(status)] = answer
    return answers


def _payment_required(envelope: dict[str, Any]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "x402Version": {"type": "integer"},
            "error": {"type": "string"},
            "resource": {"type": "object"},
            "accepts": {"type": "array", "items": {"type": "object"}},
            "extensions": {"type": "object"},
            "message": {"type": "string"},
            "problem": {"$ref": REF.format(model="ErrorDetail")},
        },
        "required": ["x402Version", "accepts", "message", "problem"],
    }
    return {
        "description": PAYMENT_REQUIRED,
        "headers": {PAYMENT_REQUIRED_HEADER: {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": schema}},
    }


def _operation(op: Operation[Any, Any], schemas: _Schemas, envelope: dict[str, Any]) -> Any:
    assert op.rest is not None
    in_path = set(PATH_PARAMETER.findall(op.rest.path))
    query = schemas.of(op.query, "validation")
    properties: dict[str, Any] = query.get("properties", {})
    required = set(query.get("required", []))
    example = EXAMPLES.get(op.name, {})
    parameters = []
    body_fields = {}
    for name, schema in properties.items():
        if name in in_path:
            where = "path"
        elif op.rest.method == "POST":
            body_fields[name] = schema
            continue
        else:
            where = "query"
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": _optional(schema),
        }
        if "description" in schema:
            parameter["description"] = schema["description"]
        if name in example:
            parameter["example"] = example[name]
        parameters.append(parameter)
    price = op.price.describe() + " in USDC per call (x402)" if op.price else "free"
    answer = schemas.ref(answer_model(op, True), "serialization")
    described: dict[str, Any] = {
        "operationId": op.name.value,
        "summary": op.title,
        "description": f"{op.description}\n\nTier: {op.tier.value} and up. Without a "
        f"subscription: {price}.",
        "tags": [op.rest.path.split("/")[3]],
        "parameters": parameters,
        "x-kamiyo-tier": op.tier.value,
        "x-kamiyo-price": None
        if op.price is None
        else {"usd": op.price.describe(), "atomic_usdc": op.price.amount},
        "security": [{}, {"bearer": []}],  # anonymous callers get the free tier
        "responses": {
            "200": {
                "description": "The answer.",
                "headers": RATE_LIMIT_HEADERS,
                "content": {"application/json": {"schema": answer}},
            },
        },
    }
    if body_fields:
        body = {"type": "object", "properties": body_fields, "additionalProperties": False}
        body["required"] = sorted(required & set(body_fields))
        media: dict[str, Any] = {"schema": body}
        if example:
            media["example"] = {k: v for k, v in example.items() if k in body_fields}
        described["requestBody"] = {"required": True, "content": {"application/json": media}}
    errors = {s: d for s, d in ERRORS.items() if op.rest.method == "POST" or s not in (413, 415)}
    described["responses"] |= _error_responses(errors, envelope)
    if op.price is not None:
        described["responses"]["402"] = _payment_required(envelope)
        described["responses"]["200"]["headers"] = RATE_LIMIT_HEADERS | {
            PAYMENT_RESPONSE_HEADER: {
                "description": "The receipt of a v2 payment (base64 JSON SettleResponse).",
                "schema": {"type": "string"},
            },
            V1_PAYMENT_RESPONSE_HEADER: {
                "description": "The receipt of a v1 payment (X-PAYMENT).",
                "schema": {"type": "string"},
            },
        }
        for name, description, longest in PAYMENT_HEADERS:
            schema = {"type": "string"} | ({"maxLength": longest} if longest else {})
            parameters.append(
                {"name": name, "in": "header", "required": False, "description": description}
                | {"schema": schema}
            )
    return described


def _account_operation(route: AccountRoute, envelope: dict[str, Any]) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": route.body}
    if route.example:
        media["example"] = route.example
    statuses = ERRORS | ACCOUNT_ERRORS
    return {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": route.description,
        "tags": ["account"],
        "security": [{}] if not route.secured else [{"bearer": []}],
        "requestBody": {"required": route.secured, "content": {"application/json": media}},
        "responses": {
            str(route.status): {
                "description": route.summary,
                "content": {"application/json": {"schema": route.answer}},
            },
            **_error_responses({s: statuses[s] for s in route.errors}, envelope),
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (servers are left out: it is served by the API itself)."""
    routed = [op for op in OPERATIONS if op.rest is not None]
    schemas = _Schemas(
        [(op.query, "validation") for op in routed]
        + [(answer_model(op, True), "serialization") for op in routed]
        + [(ErrorEnvelope, "serialization")]
    )
    envelope = schemas.ref(ErrorEnvelope, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for op in routed:
        assert op.rest is not None
        paths.setdefault(op.rest.path, {})[op.rest.method.lower()] = _operation(
            op, schemas, envelope
        )
    for route in ACCOUNT_ROUTES:
        paths[route.path] = {"post": _account_operation(route, envelope)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "KAMIYO REST API",
            "version": __version__,
            "summary": "Crypto-exploit intelligence: incidents, protocol risk, wallet and "
            "transaction screening.",
            "description": "The same operations, gate and answers as KAMIYO's MCP tools. "
            "Authenticate with an API key or access token (Authorization: Bearer); anonymous "
            "callers get the free tier, and priced operations can be paid per call with "
            "x402. Every error is {error: {code, message, details}}.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (kmy_live_…) or an OAuth access token.",
                }
            },
        },
    }

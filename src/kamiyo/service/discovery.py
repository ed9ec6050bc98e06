"""Listing metadata for x402 directories: the Bazaar extension's discovery fields.

Every priced operation's payment request carries ``extensions["bazaar"]`` (``info``: how to
call it, with an example; ``schema``: the JSON Schema ``info`` is checked against, the answer's
schema under ``output``) and ``resource.description`` (its ``catalogue.listing`` sentence,
under 500 characters), as x402's ``extensions/bazaar`` declares them: the MCP form names the
tool (``type: "mcp"``), the HTTP form the method and parameters (``type: "http"``). The
declarations come from the x402 package; the answer's schema is added beside them because its
declare functions take an output schema only with an output example, and an example answer
would be data typed twice. Schemas' ``$defs`` are lifted to the root, where ``#/$defs/…``
references resolve. Spec: x402 ``specs/extensions/bazaar.md``; code: ``x402.extensions.bazaar``.
"""

import functools
from collections.abc import Mapping
from typing import Any

from x402.extensions.bazaar import (
    BAZAAR,
    DeclareMcpDiscoveryConfig,
    declare_discovery_extension,
    declare_mcp_discovery_extension,
)

from kamiyo.service.catalogue import CATALOGUE, ToolName
from kamiyo.service.terms import listing


def mcp_extension(
    name: ToolName, input_schema: Mapping[str, Any], example: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``{"bazaar": …}`` for the MCP tool ``name`` with this input schema."""
    operation = CATALOGUE[name]
    declared = declare_mcp_discovery_extension(
        DeclareMcpDiscoveryConfig(
            tool_name=name.value,
            description=listing(operation),
            transport="streamable-http",
            input_schema=_without_defs(dict(input_schema)),
            example=dict(example) if example else None,
        )
    )
    extension: dict[str, Any] = declared[BAZAAR.key]
    return {BAZAAR.key: _with_output(extension, name, input_schema)}


@functools.cache
def _http(name: ToolName) -> dict[str, Any]:
    operation = CATALOGUE[name]
    assert operation.rest is not None
    schema = operation.query.model_json_schema()
    in_path = {part[1:-1] for part in operation.rest.path.split("/") if part.startswith("{")}
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))

    def part(names: set[str]) -> dict[str, Any]:
        return {
            "properties": {k: v for k, v in properties.items() if k in names},
            "required": sorted(required & names),
        }

    body = operation.rest.method in ("POST", "PUT", "PATCH")
    rest_of = set(properties) - in_path
    declared = declare_discovery_extension(
        input_schema=part(rest_of),
        path_params_schema=part(in_path) if in_path else None,
        body_type="json" if body else None,
    )
    extension: dict[str, Any] = declared[BAZAAR.key]
    # The method is the route's (x402's server middleware would add it from its route key).
    extension["info"]["input"]["method"] = operation.rest.method
    return _with_output(extension, name, schema)


def http_extension(name: ToolName, example: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"bazaar": …}`` for the REST route of ``name``, with an example call filled in."""
    extension = _copy(_http(name))
    operation = CATALOGUE[name]
    assert operation.rest is not None
    if example:
        path = operation.rest.path
        given = {k: v for k, v in example.items() if f"{{{k}}}" not in path}
        in_path = {k: v for k, v in example.items() if f"{{{k}}}" in path}
        body = operation.rest.method in ("POST", "PUT", "PATCH")
        info = extension["info"]["input"]
        if given:
            info["body" if body else "queryParams"] = given
        if in_path:
            info["pathParams"] = in_path
            extension["schema"]["properties"]["input"]["properties"].setdefault(
                "pathParams", {"type": "object"}
            )
    return {BAZAAR.key: extension}


def listed(required: dict[str, Any], name: ToolName, extension: Mapping[str, Any]) -> None:
    """Put the listing into a PaymentRequired (v2, as JSON): the description beside the
    resource's URL and the discovery extension beside the others."""
    resource = required.setdefault("resource", {})
    resource["description"] = listing(CATALOGUE[name])
    required.setdefault("extensions", {}).update(extension)


def _with_output(
    extension: dict[str, Any], name: ToolName, input_schema: Mapping[str, Any]
) -> dict[str, Any]:
    output = CATALOGUE[name].output.model_json_schema(mode="serialization")
    defs = dict(input_schema.get("$defs", {})) | output.pop("$defs", {})
    extension["info"]["output"] = {"type": "json"}
    schema = extension["schema"]
    schema["properties"]["output"] = {
        "type": "object",
        "properties": {"type": {"type": "string", "const": "json"}, "example": output},
        "required": ["type"],
    }
    if defs:
        schema["$defs"] = defs
    return extension


def _without_defs(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "$defs"}


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value

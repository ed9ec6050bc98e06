"""Listing metadata for x402 directories: every priced operation, over MCP and REST.

Each declaration is checked the way a Bazaar facilitator checks it (x402's own validators):
its info against its schema, and the declaration's shape; the input and output schemas are
valid JSON Schema; and the description is under the 500 characters directories list.
"""

from typing import Any

import jsonschema
import pytest
from x402.extensions.bazaar import validate_discovery_extension, validate_discovery_extension_spec

from kamiyo.mcpserver.tools import input_schema
from kamiyo.service.catalogue import OPERATIONS, Operation
from kamiyo.service.discovery import http_extension, mcp_extension
from kamiyo.service.terms import LISTING_MAX_CHARS, listing, terms
from kamiyo.web.openapi_examples import EXAMPLES

PRICED = [op for op in OPERATIONS if op.price is not None]


@pytest.mark.parametrize("operation", PRICED, ids=lambda op: op.name.value)
def test_every_priced_operation_is_listed_under_500_characters(
    operation: Operation[Any, Any],
) -> None:
    assert operation.price is not None
    text = listing(operation)
    assert len(text) < LISTING_MAX_CHARS
    assert operation.price.describe() in text
    assert "not charged" in text


@pytest.mark.parametrize("operation", PRICED, ids=lambda op: op.name.value)
def test_both_declarations_validate_as_a_facilitator_checks_them(
    operation: Operation[Any, Any],
) -> None:
    op = operation
    declared = [mcp_extension(op.name, input_schema(op, transfers=True), EXAMPLES.get(op.name))]
    if op.rest is not None:
        declared.append(http_extension(op.name, EXAMPLES.get(op.name)))
    for extension in declared:
        bazaar = extension["bazaar"]
        assert validate_discovery_extension(bazaar).valid, validate_discovery_extension(bazaar)
        assert validate_discovery_extension_spec(bazaar).valid
        jsonschema.Draft202012Validator.check_schema(bazaar["schema"])
        output = bazaar["schema"]["properties"]["output"]["properties"]["example"]
        assert output["title"] == op.output.__name__  # the answer's own schema
    mcp_input = declared[0]["bazaar"]["info"]["input"]
    assert mcp_input["toolName"] == op.name.value
    assert mcp_input["description"] == listing(op)
    jsonschema.Draft202012Validator.check_schema(mcp_input["inputSchema"])


def test_a_wrong_example_fails_validation() -> None:
    """The check can fail: an example call with a field the schema does not allow."""
    op = next(o for o in PRICED if o.rest is not None and o.rest.method == "POST")
    bazaar = http_extension(op.name, {"no_such_field": 1})["bazaar"]
    bazaar["schema"]["properties"]["input"]["properties"]["body"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {},
    }
    assert not validate_discovery_extension(bazaar).valid


def test_terms_come_from_the_tier_table() -> None:
    risk = next(op for op in PRICED if op.tier.value == "personal")
    assert "$19/month" in terms(risk, payments=True)
    assert "USDC" not in terms(risk, payments=False)

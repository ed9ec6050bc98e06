"""What ``parse_query`` makes of any surface's arguments: the query, or one line to act on.

Every text field of every operation refuses what the databases cannot hold (NUL, lone
surrogates); numbers are numbers (no booleans, nothing infinite); dates are dates. Text that
reads as a number still parses: REST and the command line hand every value over as text.
"""

import math
from typing import Any

import pytest

from kamiyo.intel.models import QueryModel
from kamiyo.service.answers import Failure, FailureKind
from kamiyo.service.arguments import parse_query
from kamiyo.service.catalogue import CATALOGUE, OPERATIONS, Operation, ToolName

# Read from the query models themselves, so a text field added later is checked too.
TEXT_FIELDS = [
    (op, name)
    for op in OPERATIONS
    for name, schema in op.query.model_json_schema().get("properties", {}).items()
    if any(
        branch.get("type") == "string" and "format" not in branch and "enum" not in branch
        for branch in schema.get("anyOf", [schema])
    )
]
UNSTORABLE = {
    "a\x00b": "must not contain a NUL character (U+0000)",
    "\x00": "must not contain a NUL character (U+0000)",
    "a\ud800b": "must not contain a lone surrogate (U+D800)",
    "\udcff": "must not contain a lone surrogate (U+DCFF)",
}


def _refused(operation: Operation[Any, Any], given: dict[str, Any]) -> str:
    parsed = parse_query(operation.name.value, operation.query, given)
    assert isinstance(parsed, Failure), parsed
    assert parsed.kind is FailureKind.INVALID_ARGUMENTS
    assert "\n" not in parsed.message
    parsed.message.encode("utf-8")  # renderable on every surface: nothing unencodable echoed
    return parsed.message


def test_every_text_field_is_found() -> None:
    found = {(op.name.value, name) for op, name in TEXT_FIELDS}
    assert {
        ("search_exploits", "query"),
        ("search_exploits", "chain"),
        ("search_exploits", "address"),
        ("get_exploit", "exploit_id"),
        ("find_exploit_by_tx", "tx_hash"),
        ("assess_protocol_risk", "protocol_name"),
        ("check_wallet_interactions", "wallet_address"),
    } <= found


@pytest.mark.parametrize(("text", "problem"), UNSTORABLE.items())
@pytest.mark.parametrize(
    ("operation", "field"), TEXT_FIELDS, ids=[f"{op.name.value}.{f}" for op, f in TEXT_FIELDS]
)
def test_text_the_databases_cannot_hold_is_refused_by_name(
    operation: Operation[Any, Any], field: str, text: str, problem: str
) -> None:
    message = _refused(operation, {field: text})
    assert f"{field}: {problem}" in message


SEARCH = CATALOGUE[ToolName.SEARCH_EXPLOITS]
RISK = CATALOGUE[ToolName.ASSESS_PROTOCOL_RISK]
STATS = CATALOGUE[ToolName.GET_EXPLOIT_STATS]


@pytest.mark.parametrize(
    ("operation", "given", "hint"),
    [
        (SEARCH, {"limit": True}, "limit: must be a number, not true or false"),
        (SEARCH, {"limit": False}, "limit: must be a number, not true or false"),
        (RISK, {"protocol_name": "euler", "limit": True}, "limit: must be a number"),
        (SEARCH, {"min_loss_usd": True}, "min_loss_usd: must be a number, not true or false"),
        (SEARCH, {"min_loss_usd": "Infinity"}, "min_loss_usd: Input should be a finite number"),
        (SEARCH, {"min_loss_usd": "inf"}, "min_loss_usd: Input should be a finite number"),
        (SEARCH, {"min_loss_usd": "NaN"}, "min_loss_usd: Input should be a finite number"),
        (SEARCH, {"min_loss_usd": math.inf}, "min_loss_usd: Input should be a finite number"),
        (SEARCH, {"min_loss_usd": math.nan}, "min_loss_usd: Input should be a finite number"),
        (SEARCH, {"min_loss_usd": "1e400"}, "min_loss_usd: Input should be a finite number"),
        (SEARCH, {"since": 0}, "since: must be a date as YYYY-MM-DD"),
        (SEARCH, {"since": "86400"}, "since: must be a date as YYYY-MM-DD"),
        (SEARCH, {"until": True}, "until: must be a date as YYYY-MM-DD"),
        (STATS, {"since": 1.5}, "since: must be a date as YYYY-MM-DD"),
        (SEARCH, {"since": "2023-02-30"}, "since:"),
    ],
)
def test_numbers_and_dates_are_strict(
    operation: Operation[Any, Any], given: dict[str, Any], hint: str
) -> None:
    assert hint in _refused(operation, given)


def test_numbers_and_dates_given_as_text_still_parse() -> None:
    """REST query parameters and command-line options arrive as text."""
    query = parse_query("search_exploits", SEARCH.query, {"limit": "5", "min_loss_usd": "1e6"})
    assert not isinstance(query, Failure), query
    assert (query.limit, query.min_loss_usd) == (5, 1_000_000.0)
    query = parse_query("search_exploits", SEARCH.query, {"limit": 7.0, "since": "2023-01-31"})
    assert not isinstance(query, Failure), query
    assert (query.limit, str(query.since)) == (7, "2023-01-31")


def test_unknown_names_are_shown_short_and_escaped() -> None:
    message = _refused(SEARCH, {"x" * 100_000: 1, "\ud800": 2, "a\x00b": 3, "chains": 4})
    assert len(message) < 600
    assert "chains" in message
    assert "'\\ud800'" in message
    assert "'a\\x00b'" in message
    many = _refused(SEARCH, {f"extra{i}": i for i in range(1000)})
    assert len(many) < 600
    assert "1000 in all" in many


def test_every_query_model_checks_its_text() -> None:
    for op in OPERATIONS:
        assert issubclass(op.query, QueryModel), op.name

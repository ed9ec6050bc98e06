"""Turning validation failures into one line a person or an agent can act on."""

from collections.abc import Mapping

from pydantic import ValidationError


def describe_validation_error(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """``field: what is wrong`` for each problem, without echoing the rejected values.

    ``names`` renames fields, for callers that know them under other names.
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        if names and loc:
            loc[0] = names.get(loc[0], loc[0])
        where = ".".join(loc) or "input"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)

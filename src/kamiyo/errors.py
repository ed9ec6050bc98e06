"""Validating caller input, and turning failures into one line a person or an agent can act on."""

import re
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validate_given(model: type[M], fields: Mapping[str, object]) -> M:
    """``model`` from the fields a caller gave; None means not given, so defaults apply."""
    return model.model_validate({k: v for k, v in fields.items() if v is not None})


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


# The SDK reports argument validation as "Error executing tool NAME: <pydantic error text>".
_SDK_VALIDATION = re.compile(r"^Error executing tool (\S+): \d+ validation errors? for \S+\n", re.S)
_PYDANTIC_ITEM = re.compile(r"^(\S[^\n]*)\n  ([^\n]*?)(?: \[type=[^\n]*)?$", re.M)


def tidy_sdk_validation_message(text: str) -> str | None:
    """One line from the SDK's multi-line argument error, or None when ``text`` is not one."""
    head = _SDK_VALIDATION.match(text)
    if head is None:
        return None
    items = [f"{loc}: {msg}" for loc, msg in _PYDANTIC_ITEM.findall(text[head.end() :])]
    return f"Invalid arguments for {head.group(1)}: " + "; ".join(items)

"""Turning what a caller sent into an operation's query, or one sentence saying what to fix.

Every surface hands over plain name -> value pairs (MCP arguments, REST path and query
parameters, command-line options); unknown names are refused rather than ignored, so a typo
("chains" for "chain") cannot quietly widen a search.
"""

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kamiyo.errors import describe_validation_error
from kamiyo.service.answers import Failure, FailureKind

Q = TypeVar("Q", bound=BaseModel)

# Unknown names are the caller's own text: a few, shortened and escaped, go back in the message.
NAMES_SHOWN = 5
NAME_SHOWN_CHARS = 40


def parse_query(
    name: str,
    model: type[Q],
    given: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
) -> Q | Failure:
    """``model`` from the values given (None means not given, so defaults apply).

    ``names`` renames fields in messages for callers who know them by other names (CLI flags).
    """
    unknown = sorted(set(given) - set(model.model_fields))
    if unknown:
        takes = ", ".join((names or {}).get(f, f) for f in model.model_fields) or "no arguments"
        return Failure(
            FailureKind.INVALID_ARGUMENTS,
            f"Unknown argument(s) for {name}: {_shown(unknown)}. It takes: {takes}.",
        )
    try:
        return model.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        return Failure(
            FailureKind.INVALID_ARGUMENTS,
            f"Invalid arguments for {name}: {describe_validation_error(exc, names)}",
        )


def _shown(unknown: list[str]) -> str:
    """The first unknown names, as identifiers where they are, else escaped (``ascii``: never
    a NUL or a lone surrogate in a message) and cut short."""
    shown = [
        given
        if given.isidentifier() and len(given) <= NAME_SHOWN_CHARS
        else ascii(given[:NAME_SHOWN_CHARS]) + ("…" if len(given) > NAME_SHOWN_CHARS else "")
        for given in unknown[:NAMES_SHOWN]
    ]
    more = f", … ({len(unknown)} in all)" if len(unknown) > NAMES_SHOWN else ""
    return ", ".join(shown) + more

"""A signed delivery's body read as an event, within bounds, before anything else looks at it.

Python's ``json`` parser recurses once per nested array or object, and so does anything that
walks the result, so the nesting is measured on the bytes first (``nested_deeper_than``, in C
passes over the text: a 50,000-deep body is refused in milliseconds). Then the envelope we
record and order by is read through a model: ``id`` and ``type`` printable and no wider than
their ``stripe_events`` columns, ``created`` whole Unix seconds in range. The event's object
(``data.object``) is handed on as a plain dict; each handler reads the fields it uses through
its own model (``stripe_objects``).
"""

import json
from itertools import accumulate, repeat
from operator import sub
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, StringConstraints

from kamiyo.billing.stripe_objects import StripeTime, read
from kamiyo.db.bounds import printable, text_width
from kamiyo.db.tables import StripeEvent

# Stripe's events nest 11 deep at most (invoices; tests/fixtures/stripe/events), and webhooks
# never expand objects. Six times that is room for new API versions and far from recursion
# limits.
MAX_DEPTH = 64

# Outside strings, ``[``/``{`` open a level and ``]``/``}`` close one; any other byte is dropped.
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nested_deeper_than(payload: bytes, limit: int) -> bool:
    """Whether JSON text opens more than ``limit`` arrays and objects inside each other.

    Exact for valid JSON without parsing it. Escaped backslashes, then escaped quotes, are
    dropped, so every quote left delimits a string; the text between every other pair of
    quotes is outside strings, and its brackets give the depth as a running sum. For text that
    is not JSON it may be wrong only past the first error, where the parser stops anyway.
    UTF-8 never puts these ASCII bytes inside a multi-byte character.
    """
    unescaped = payload.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside_strings = b"".join(unescaped.split(b'"')[::2])
    steps = outside_strings.translate(_STEPS, _NOT_BRACKETS)
    if b"\x02" * (limit + 1) in steps:  # the usual attack, a long run of opening brackets
        return True
    return max(accumulate(map(sub, steps, repeat(1))), default=0) > limit


EventId = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=text_width(StripeEvent.id)),
    AfterValidator(printable),
]
EventType = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=text_width(StripeEvent.type)),
    AfterValidator(printable),
]


class _Data(BaseModel):
    object: dict[str, Any]


class Envelope(BaseModel):
    """What we record and order an event by; the object it carries is its handler's to read."""

    model_config = ConfigDict(frozen=True)

    id: EventId
    type: EventType
    created: StripeTime
    data: _Data


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python's parser takes NaN and Infinity otherwise


def read_event(payload: bytes) -> Envelope | str:
    """The event in a body whose signature verified, or why it is unusable (for a 400)."""
    if nested_deeper_than(payload, MAX_DEPTH):
        return f"malformed body: nested deeper than {MAX_DEPTH} levels"
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    except ValueError:  # not UTF-8, not JSON, or a number too long for int()
        return "malformed body: not a JSON event"
    if not isinstance(data, dict):
        return "malformed body: not a JSON event"
    envelope = read(Envelope, data)
    return f"malformed event: {envelope}" if isinstance(envelope, str) else envelope

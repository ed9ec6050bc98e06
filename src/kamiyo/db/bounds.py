"""What a value from outside (a webhook, a token) must be before it reaches a column or a query.

PostgreSQL answers a value it cannot hold with an error, even in a WHERE clause: an integer
beyond 32 bits, text with NUL, a lone surrogate (not encodable as UTF-8), or text wider than a
``String(n)`` column it is written to; SQLite cannot hold a lone surrogate either. These reach
Python strings from outside: JSON escapes such as ``"\\u0000"`` or ``"\\ud800"``, and undecodable
bytes in command-line arguments. Checked first, such a value is the caller's error, with its own
message, instead of a database failure.
"""

import re
from typing import Any

from sqlalchemy.orm import QueryableAttribute

# Integer columns hold 32 bits on PostgreSQL; every pk (and a value meant to be one) is in
# 1..INTEGER_MAX.
INTEGER_MAX = 2**31 - 1
# 3000-01-01T00:00:00Z, the latest Unix time (seconds) taken from outside. Far past any real
# subscription period, cancellation date or token expiry, and far enough below datetime's year
# 9999 that adding a grace period or a lifetime to it cannot overflow.
UNIX_TIME_MAX = 32_503_680_000


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """What in ``text`` (free text: a search, a name) no database can hold, in words (never the
    text itself); None if nothing."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "a NUL character (U+0000)"
    return f"a lone surrogate (U+{ord(found.group()):04X}), which is not text"


def printable(value: str) -> str:
    """``value`` (an identifier) if it has no control characters (NUL among them) and no lone
    surrogates: stricter than ``unstorable``."""
    if not value.isprintable():
        raise ValueError("not printable text")
    return value


def text_width(column: QueryableAttribute[Any]) -> int:
    """A String column's length, so an outside value is bounded by the column it goes into."""
    length = column.type.length
    if not isinstance(length, int):
        raise TypeError(f"{column} has no length")
    return length

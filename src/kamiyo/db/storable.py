"""Text the databases cannot hold, found before a query is sent.

PostgreSQL refuses a NUL character (U+0000) in text, and neither database can take a lone
surrogate (U+D800 to U+DFFF): it has no UTF-8 form. Both reach Python strings from outside:
JSON escapes such as ``"\\u0000"`` or ``"\\ud800"``, and undecodable bytes in command-line
arguments or environment variables. Sent on, they fail inside the driver (an internal error);
checked here, they are the caller's mistake, said in one line.
"""

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """What in ``text`` no database can hold, in words (never the text itself); None if
    nothing."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "a NUL character (U+0000)"
    return f"a lone surrogate (U+{ord(found.group()):04X}), which is not text"

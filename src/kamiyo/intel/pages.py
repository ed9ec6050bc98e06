"""Cursors for paging through a search: where the next page starts, tied to its search.

A cursor is the offset of the next page and a digest of the search it belongs to, as
URL-safe base64 of compact JSON. It is not secret and not signed: changing its offset only
pages elsewhere in the same answer, and a cursor from another search is refused. Pages go at
most ``MAX_OFFSET`` deep; past that, narrow the search with filters.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping

MAX_OFFSET = 1000


def search_digest(arguments: Mapping[str, object]) -> str:
    """Names a search by its arguments (other than the page asked for)."""
    text = json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(offset: int, digest: str) -> str:
    raw = json.dumps({"o": offset, "s": digest}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, digest: str) -> int:
    """The offset a cursor names; ValueError saying why when it is not one of this search's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError("cursor is not one this server gave (use next_cursor as given)") from None
    if not isinstance(found, dict) or not isinstance(found.get("o"), int):
        raise ValueError("cursor is not one this server gave (use next_cursor as given)")
    if found.get("s") != digest:
        raise ValueError("cursor belongs to another search: page with the same arguments")
    offset = found["o"]
    if not 0 < offset <= MAX_OFFSET:
        raise ValueError(f"cursor pages past {MAX_OFFSET} results: narrow the search instead")
    return int(offset)

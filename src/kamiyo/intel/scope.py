"""What a caller may see, and the one thing that can go wrong that the caller must change.

Every operation's intel function takes ``(session, query, scope)``: the scope is decided above
this floor (by the gate, from a tier or a payment) and only narrows what is answered.
"""

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    # The most records one answer lists (None: the query's own limit).
    max_results: int | None = None
    # Incidents dated after this are withheld (a delayed feed); None means real time.
    hide_after: dt.date | None = None
    # Risk answers carry recommendations.
    detailed: bool = False

    def hides(self, date: dt.date) -> bool:
        return self.hide_after is not None and date > self.hide_after


class NotFoundError(LookupError):
    """The thing asked for is not on record (or not visible to this caller); says what to try."""

"""The one small interface every source adapter implements.

An adapter knows one source's format and where it lives. It asks a :class:`Fetch` for each
document (the fetch layer owns timeouts, retries, conditional requests and politeness, and
reads local files for ``--from``), parses what comes back into :class:`SourceReport` values
and, for registries, :class:`ProtocolRecord` values, and says how many items it saw. It never
touches the store: the ingest run decides what is new.
"""

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kamiyo.intel.reports import ProtocolRecord, SourceReport


@dataclass(frozen=True, slots=True)
class SourceInfo:
    name: str  # the adapter's name: the ``source`` of its reports and the ``--source`` value
    title: str  # what people call it, e.g. "DeFiHackLabs"
    url: str  # the default location: a URL, or the root URL other documents hang off
    licence: str
    attribution: str
    enabled: bool = True  # refreshed by ``kamiyo ingest`` unless settings say otherwise
    bundled: bool = False  # shipped in the package's snapshot, loaded offline on first start
    # Each item is a distinct incident (a curated table), so two never merge with each other.
    distinct_items: bool = False


@dataclass(frozen=True, slots=True)
class Document:
    """A fetched document: its bytes and the location they came from."""

    location: str
    body: bytes
    content_type: str | None = None


class SourceFormatError(ValueError):
    """A document is not in the format the adapter reads (a changed layout, a truncated body).

    The message names the document and what was expected; it never carries the body.
    """


class Fetch(Protocol):
    async def __call__(self, location: str) -> Document | None:
        """The document at ``location`` (absolute URL or local path), or None when it has not
        changed since the last successful run (a conditional request answered 304).

        Raises :class:`FetchError` when it cannot be had.
        """
        ...


class FetchError(Exception):
    """A document could not be fetched; the message is one line an operator can act on."""


@dataclass(frozen=True, slots=True)
class SanctionsList:
    """A sanctions list as one fetch read it: every address (in its stored form) with the asset
    codes the list gives it under. ``unchanged_assets`` are the assets whose document had not
    changed since the last run (304): their addresses are the ones already stored."""

    name: str
    date: dt.date
    entries: Mapping[str, frozenset[str]]
    unchanged_assets: frozenset[str] = frozenset()


@dataclass(slots=True)
class Collected:
    reports: list[SourceReport] = field(default_factory=list)
    protocols: list[ProtocolRecord] = field(default_factory=list)
    # Items the source listed, parsed or not: a parser that sees none where it saw some before
    # has met a changed layout, which the ingest run reports as an error.
    items_seen: int = 0
    # Documents that answered "not modified": nothing to parse, nothing lost.
    unchanged_documents: int = 0
    # Per-item problems that did not stop the run (an item without a date, say): counted as
    # failed in the summary, each logged once by the adapter.
    failed: int = 0
    # A sanctions list, complete (every one of its documents read): it replaces the stored one.
    sanctions: SanctionsList | None = None


class Adapter(Protocol):
    info: SourceInfo

    async def collect(
        self,
        fetch: Fetch,
        base: str,
        *,
        since: dt.date | None = None,
        seen: Callable[[str], bool] = lambda source_id: False,
    ) -> Collected:
        """Everything the source at ``base`` holds (from ``since`` on, when given).

        ``base`` is ``info.url`` or what ``--from`` named (a mirror URL, a local file or
        folder). ``seen`` says whether a source id is already stored, so paginated sources can
        stop at the first page of items already seen.
        """
        ...

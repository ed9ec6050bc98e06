"""What the feed adapters (DeFiLlama, SlowMist, rekt.news, Web3 Is Going Great) share.

Ids formed from a source's own fields, chain names mapped onto ``kamiyo.chains`` (unknown ones
dropped and logged once per name), dollar figures read from text, HTML reduced to plain text,
RSS/Atom documents parsed strictly enough that a truncated feed is an error, and the one way a
bad item is counted and logged. The leading underscore marks this module as no adapter.
"""

import datetime as dt
import html
import io
import json
import logging
import re
import time
import unicodedata
import warnings
import xml.sax
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

import feedparser  # type: ignore[import-untyped]  # feedparser ships no type information
from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from pydantic import ValidationError

from kamiyo.chains import normalize_chain
from kamiyo.intel.sources.base import Collected, Fetch, SourceFormatError, SourceInfo

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# "$285M", "$4.8 million", "US$32 million", "$ 1,080,000", "$1.2bn": a dollar sign, a number
# with optional thousands separators, an optional scale word. Other currencies are not read.
_DOLLARS = re.compile(
    r"(?:US)?\$\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(thousand|million|billion|bn|[kmb])?\b",
    re.IGNORECASE,
)
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9}
_SPACE = re.compile(r"\s+")


def slug(text: str, max_length: int = 160) -> str:
    """``text`` as lower-case ASCII words joined by hyphens ("Balancer V1" -> "balancer-v1")."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("-", folded.lower()).strip("-")[:max_length].rstrip("-")


class UniqueIds:
    """Source ids made unique within one run: a repeat of ``x`` becomes ``x-2``, ``x-3``...

    Used where a source has no id of its own and two items can share the fields the id is
    formed from (two hacks of one name on one day). The suffix follows document order.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def __call__(self, base: str) -> str:
        self._counts[base] += 1
        count = self._counts[base]
        return base if count == 1 else f"{base}-{count}"


class ChainNames:
    """Chain names as a source writes them, mapped to KAMIYO's slugs.

    A name ``kamiyo.chains`` does not know is dropped from the report (a chain we cannot name
    is not evidence either way) and counted; :meth:`log_unknown` logs each such name once.
    """

    def __init__(self, source: str, logger: logging.Logger) -> None:
        self._source = source
        self._logger = logger
        self.unknown: Counter[str] = Counter()

    def slugs(self, names: Iterable[object]) -> list[str]:
        found: list[str] = []
        for name in names:
            if not isinstance(name, str) or not name.strip():
                continue
            try:
                found.append(normalize_chain(name.strip()))
            except ValueError:
                self.unknown[name.strip()] += 1
        return list(dict.fromkeys(found))

    def log_unknown(self, *, one_line: bool = False) -> None:
        """Log each unknown name once, or (``one_line``) all of them in one line."""
        if one_line and self.unknown:
            names = sorted(self.unknown)
            self._logger.warning(
                "%s: %d chain names are not in KAMIYO's chain vocabulary and were dropped (%s%s)",
                self._source,
                len(names),
                ", ".join(repr(n) for n in names[:8]),
                ", ..." if len(names) > 8 else "",
            )
            return
        for name, count in sorted(self.unknown.items()):
            self._logger.warning(
                "%s: chain %r is not in KAMIYO's chain vocabulary; dropped from %d item(s)",
                self._source,
                name,
                count,
            )


def skip(collected: Collected, logger: logging.Logger, source: str, item: str, why: str) -> None:
    """Count one item that could not be read and log it, once, in one line."""
    collected.failed += 1
    logger.warning("%s: %s skipped: %s", source, item, why)


def dollar_amounts(text: str) -> dict[float, str]:
    """Every distinct US-dollar figure ``text`` states, each with the words it was written in."""
    found: dict[float, str] = {}
    for match in _DOLLARS.finditer(text):
        whole, fraction, scale = match.groups()
        value = float(whole.replace(",", "") + (fraction or ""))
        if scale:
            value *= _SCALE[scale.lower()]
        found.setdefault(value, match.group(0).strip())
    return found


def one_dollar_amount(text: str) -> tuple[float, str] | None:
    """The dollar figure ``text`` states when it states exactly one, else None.

    Two different figures ("$1B TVL, $5M lost") leave the loss unknown rather than guessed.
    """
    amounts = dollar_amounts(text)
    if len(amounts) != 1:
        return None
    [(value, written)] = amounts.items()
    return value, written


def soup(markup: str | bytes) -> BeautifulSoup:
    """``markup`` parsed with the standard library's HTML parser, without bs4's hints."""
    with warnings.catch_warnings():
        # bs4 warns when markup looks like a file name or like XML; both are just input here.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        return BeautifulSoup(markup, "html.parser")


def plain_text(markup: str) -> str:
    """The text of an HTML fragment, tags dropped, entities decoded, whitespace collapsed."""
    text = soup(markup).get_text(" ") if "<" in markup else html.unescape(markup)
    return _SPACE.sub(" ", text).strip()


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, marked with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut}…"


def parse_feed(body: bytes, source: str) -> Any:
    """An RSS or Atom document parsed by feedparser; SourceFormatError if it is neither.

    feedparser is lenient: it reads what it can of a truncated feed and says so only in
    ``bozo_exception``. A feed that is not well-formed XML is refused here, so a cut-off
    download never passes for a shorter feed.
    """
    # A stream, not bytes: given bytes or str, feedparser first tries them as a file name.
    parsed = feedparser.parse(io.BytesIO(body))
    if not parsed.get("version"):
        raise SourceFormatError(f"{source}: the document is not an RSS or Atom feed")
    problem = parsed.get("bozo_exception")
    if isinstance(problem, xml.sax.SAXParseException):
        raise SourceFormatError(
            f"{source}: the feed is not well-formed XML "
            f"(line {problem.getLineNumber()}: {problem.getMessage()})"
        )
    return parsed


def entry_date(entry: Any, *keys: str) -> dt.date | None:
    """The UTC day of the first of ``keys`` (feedparser ``*_parsed`` fields) the entry has."""
    for key in keys:
        value = entry.get(key)
        if isinstance(value, time.struct_time):
            return dt.date(value.tm_year, value.tm_mon, value.tm_mday)
    return None


class BadItemError(ValueError):
    """One item cannot be read (no date, no name); the message says why, never its content."""


def invalid_fields(error: ValidationError) -> str:
    """The fields a pydantic error names, without the values that failed."""
    fields = sorted({".".join(str(part) for part in e["loc"]) or "item" for e in error.errors()})
    return "invalid " + ", ".join(fields)


def load_json(body: bytes, source: str) -> Any:
    """``body`` parsed as JSON; SourceFormatError (naming where it broke) if it is not."""
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise SourceFormatError(f"{source}: the body is not JSON text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise SourceFormatError(
            f"{source}: the body is not JSON ({exc.msg} at character {exc.pos})"
        ) from None


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words (object, array, string...)."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def number(value: object) -> float | None:
    """A JSON number as a float; None for null, booleans, text and anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def text(value: object) -> str | None:
    """A JSON string with its ends stripped; None for null, blanks and non-strings."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def is_url(value: str | None) -> TypeGuard[str]:
    """Whether ``value`` is an absolute http(s) URL (what a reference must be)."""
    return value is not None and value.startswith(("https://", "http://")) and " " not in value


def identifier(value: object) -> str | None:
    """An id the source gives as a JSON string or integer, as text; None when absent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(value)


def since_filter(collected: Collected, since: dt.date | None) -> Collected:
    """``collected`` without the reports dated before ``since`` (all of them when None)."""
    if since is not None:
        collected.reports = [r for r in collected.reports if r.date >= since]
    return collected


@dataclass(slots=True)  # not frozen: the Adapter protocol declares ``info`` settable
class DocumentAdapter:
    """An adapter that reads one document at ``base`` with one parser (no pagination)."""

    info: SourceInfo
    parse: Callable[[bytes], Collected]

    async def collect(
        self,
        fetch: Fetch,
        base: str,
        *,
        since: dt.date | None = None,
        seen: Callable[[str], bool] = lambda source_id: False,
    ) -> Collected:
        document = await fetch(base)
        if document is None:
            return Collected(unchanged_documents=1)
        return since_filter(self.parse(document.body), since)

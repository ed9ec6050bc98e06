"""rekt.news (https://rekt.news/rss/feed.xml): the RSS 2.0 feed of incident articles.

Per item: ``title`` "X - Rekt" (any case, optionally numbered: "X - REKT 2", "X - Rekt II")
gives the protocol "X"; ``link`` (or the ``guid``) is the article's URL and its last path
segment the source id ("drift-protocol-rekt"); ``pubDate`` is the date; ``description``,
stripped of HTML and cut to :data:`DESCRIPTION_LIMIT` characters, the description.

The date is the article's publication date, usually a few days after the exploit: the feed
gives no other. The loss is rarely in the feed; it is read only when the description states
exactly one dollar figure ("$285M"), with basis "usd" and the figure as written kept in
``loss_text``; two different figures (a TVL and a loss, say) leave it unknown. Items whose
title lacks the "- Rekt" mark (editorials, interviews, newsletters) are not incident reports
and are dropped; they count as seen, not as failed.
"""

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources._common import (
    BadItemError,
    DocumentAdapter,
    entry_date,
    invalid_fields,
    is_url,
    one_dollar_amount,
    parse_feed,
    plain_text,
    shorten,
    skip,
)
from kamiyo.intel.sources.base import Collected, SourceInfo

log = logging.getLogger(__name__)

INFO = SourceInfo(
    name="rekt",
    title="rekt.news",
    url="https://rekt.news/rss/feed.xml",
    licence="No licence stated (articles © rekt.news); facts and the short feed summaries only",
    attribution="Incident articles from rekt.news (https://rekt.news)",
)
DESCRIPTION_LIMIT = 500
# "Euler Finance - REKT", "Cream Finance - REKT 2", "Ronin Network - Rekt II".
_TITLE = re.compile(r"^(?P<protocol>.+?)\s+[-\u2013\u2014]\s+rekt(?:\s+(?:\d+|[ivx]+))?\s*$", re.I)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,199}$")


def protocol_of(title: str) -> str | None:
    """The protocol an article title names ("Drift Protocol - Rekt" -> "Drift Protocol")."""
    match = _TITLE.match(plain_text(title))
    return match.group("protocol").strip() if match else None


def _source_id(entry: Any) -> tuple[str, str | None]:
    """The article's slug and URL, from its link or, failing that, its guid."""
    for key in ("link", "id"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        value = value.strip()
        if is_url(value):
            segment = urlsplit(value).path.rstrip("/").rsplit("/", 1)[-1]
            if _ID.match(segment):
                return segment, value
        elif _ID.match(value):
            return value, None
    raise BadItemError("no link or guid to identify it by")


def _report(entry: Any, protocol: str) -> SourceReport:
    source_id, url = _source_id(entry)
    day = entry_date(entry, "published_parsed", "updated_parsed")
    if day is None:
        raise BadItemError("no date")
    summary = entry.get("summary")
    description = plain_text(summary) if isinstance(summary, str) else ""
    loss = one_dollar_amount(description)
    return SourceReport(
        source=INFO.name,
        source_id=source_id,
        url=url,
        date=day,
        protocol=protocol,
        loss_usd=loss[0] if loss else None,
        loss_usd_basis="usd" if loss else None,
        loss_text=loss[1] if loss else None,
        description=shorten(description, DESCRIPTION_LIMIT) or None,
    )


def parse_rss(body: bytes) -> Collected:
    """The incident articles in a rekt.news RSS body."""
    feed = parse_feed(body, INFO.name)
    entries = feed.get("entries") or []
    collected = Collected(items_seen=len(entries))
    for index, entry in enumerate(entries):
        title = entry.get("title")
        label = f"item #{index}"
        try:
            if not isinstance(title, str) or not title.strip():
                raise BadItemError("no title")
            label = f"item #{index} ({title[:60]})"
            protocol = protocol_of(title)
            if protocol is None:
                log.debug("%s: %s is not an incident article; dropped", INFO.name, label)
                continue
            collected.reports.append(_report(entry, protocol))
        except BadItemError as bad:
            skip(collected, log, INFO.name, label, str(bad))
        except ValidationError as error:
            skip(collected, log, INFO.name, label, invalid_fields(error))
    return collected


ADAPTER = DocumentAdapter(INFO, parse_rss)

"""SlowMist Hacked (https://hacked.slowmist.io/): the paginated HTML list of incidents.

Page N is ``https://hacked.slowmist.io/?c=&page=N`` (``c`` filters by chain; empty is all),
newest first. Each incident is a ``div.case-content > ul > li`` holding ``span.time``
(YYYY-MM-DD) and labelled parts: "Hacked target:", "Description of the event:", "Amount of
loss:" ("$ 1,080,000", or "-" when unknown), "Attack method:", and a "View Reference Sources"
link in ``p.link-reference``. The parts are found by their labels, not their positions.

Source ids: ``YYYYMMDD-<target as a slug>`` ("20260327-moonwell"). The reference URL is not
used as the id: one article or post can cover several listed incidents, and an item may have
none; the date and the target are always there. A second item with the same date and target
in one run gets ``-2``, ``-3`` in list order. The reference URL is kept in ``references``
(a hard key for entity resolution). The list has no page per incident, so ``url`` is None.

``collect`` reads page 1, 2, ... and stops at the first page whose items are all already
stored (``seen``), at an empty page (past the end), once items are older than ``since``, when a
page is answered "not modified" or repeats the page before, or at :data:`PAGE_CAP` pages.
A page without the ``div.case-content`` list is a changed layout: SourceFormatError.
"""

import datetime as dt
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bs4 import Tag
from pydantic import ValidationError

from kamiyo.chains import normalize_chain
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources._common import (
    BadItemError,
    UniqueIds,
    invalid_fields,
    is_url,
    one_dollar_amount,
    shorten,
    since_filter,
    skip,
    slug,
    soup,
)
from kamiyo.intel.sources.base import Collected, Fetch, SourceFormatError, SourceInfo

log = logging.getLogger(__name__)

INFO = SourceInfo(
    name="slowmist",
    title="SlowMist Hacked",
    url="https://hacked.slowmist.io/",
    licence="No licence stated (content by SlowMist)",
    attribution="Incident list from SlowMist Hacked (https://hacked.slowmist.io/)",
)
PAGE_CAP = 200  # about 20 incidents a page: far more than the whole list holds today
DESCRIPTION_LIMIT = 1000
_LABELS = {
    "hacked target": "target",
    "description of the event": "description",
    "amount of loss": "amount",
    "attack method": "method",
}
# "unknown contract (Stake) on BSC": a target that ends by naming its chain.
_ON_CHAIN = re.compile(r"\bon ([A-Za-z][\w .-]{1,30})$")


def page_url(base: str, page: int) -> str:
    """The location of list page ``page`` under ``base`` (its ``c`` filter kept)."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "page"]
    if not any(key == "c" for key, _ in query):
        query.insert(0, ("c", ""))
    return urlunsplit(parts._replace(query=urlencode([*query, ("page", str(page))])))


def _labelled(item: Tag) -> dict[str, str]:
    """Each labelled part of an item: the label's field name -> the text after the label."""
    parts: dict[str, str] = {}
    for label in item.find_all("em"):
        field = _LABELS.get(label.get_text(" ", strip=True).rstrip(": ").lower())
        holder = label.parent
        if field is None or holder is None or field in parts:
            continue
        value = "".join(
            node.get_text(" ") if isinstance(node, Tag) else str(node)
            for node in holder.children
            if node is not label
        )
        parts[field] = " ".join(value.split())
    return parts


def _chains(target: str) -> list[str]:
    match = _ON_CHAIN.search(target)
    if match is None:
        return []
    try:
        return [normalize_chain(match.group(1))]
    except ValueError:  # "on Example Street": not a chain, and not worth a log line
        return []


def _report(item: Tag, ids: UniqueIds) -> SourceReport:
    time = item.select_one("span.time")
    try:
        day = dt.date.fromisoformat(time.get_text(strip=True)) if time else None
    except ValueError:
        day = None
    if day is None:
        raise BadItemError("no date")
    parts = _labelled(item)
    target = parts.get("target")
    if not target:
        raise BadItemError("no hacked target")
    target_slug = slug(target)
    if not target_slug:
        raise BadItemError("the target has no letters or digits to form an id from")
    amount = parts.get("amount")
    amount = None if amount in (None, "", "-") else amount
    loss = one_dollar_amount(amount) if amount else None
    link = item.select_one("p.link-reference a[href]")
    href = link.get("href") if link else None
    reference = href.strip() if isinstance(href, str) else None
    description = parts.get("description")
    return SourceReport(
        source=INFO.name,
        source_id=ids(f"{day:%Y%m%d}-{target_slug}"),
        date=day,
        protocol=target,
        chains=_chains(target),
        loss_usd=loss[0] if loss else None,
        loss_usd_basis="usd" if loss else None,
        loss_text=amount,
        attack_type_raw=parts.get("method") or None,
        description=shorten(description, DESCRIPTION_LIMIT) if description else None,
        references=[reference] if is_url(reference) else [],
    )


def parse_page(body: bytes, ids: UniqueIds | None = None) -> Collected:
    """The incidents on one list page. ``ids`` carries id suffixes across the pages of a run.

    An empty list is an empty result; a page without the list raises SourceFormatError.
    """
    document = soup(body)
    if document.select_one("div.case-content") is None:
        raise SourceFormatError(
            f"{INFO.name}: the page has no incident list (div.case-content); "
            "the layout may have changed"
        )
    ids = ids or UniqueIds()
    items = document.select("div.case-content > ul > li")
    collected = Collected(items_seen=len(items))
    for index, item in enumerate(items):
        try:
            collected.reports.append(_report(item, ids))
        except BadItemError as bad:
            skip(collected, log, INFO.name, f"item #{index}", str(bad))
        except ValidationError as error:
            skip(collected, log, INFO.name, f"item #{index}", invalid_fields(error))
    return collected


class SlowMistAdapter:
    info = INFO

    async def collect(
        self,
        fetch: Fetch,
        base: str,
        *,
        since: dt.date | None = None,
        seen: Callable[[str], bool] = lambda source_id: False,
    ) -> Collected:
        """Pages from 1 on, until one of the stops in the module docstring."""
        collected = Collected()
        ids = UniqueIds()
        paged = is_url(base)  # a local file (``--from``) is one page
        previous: bytes | None = None
        for number in range(1, PAGE_CAP + 1 if paged else 2):
            location = page_url(base, number) if paged else base
            document = await fetch(location)
            if document is None:
                collected.unchanged_documents += 1
                break
            if document.body == previous:
                log.warning("%s: %s repeats the page before; stopping", INFO.name, location)
                break
            previous = document.body
            try:
                page = parse_page(document.body, ids)
            except SourceFormatError as error:
                raise SourceFormatError(f"{error} (page {number}: {location})") from None
            # Newest first: once an item is older than ``since``, every later one is too.
            older = since is not None and any(r.date < since for r in page.reports)
            all_seen = bool(page.reports) and all(seen(r.source_id) for r in page.reports)
            collected.items_seen += page.items_seen
            collected.failed += page.failed
            collected.reports += since_filter(page, since).reports
            if page.items_seen == 0 or older or all_seen:
                break
        else:
            if paged:
                log.warning("%s: stopped at the page cap (%d pages)", INFO.name, PAGE_CAP)
        return collected


ADAPTER = SlowMistAdapter()

"""Web3 Is Going Great (https://web3isgoinggreat.com/feed.xml): the Atom feed, hacks only.

Molly White's timeline covers far more than hacks (scams, rug pulls, lawsuits, collapses); only
entries about hacks, exploits and thefts are kept, by :func:`is_hack` (the rule is written out
in docs/sources.md). Per entry: ``id``/``link`` ``https://web3isgoinggreat.com/single/<id>``
gives the source id (the readable id) and the URL; ``published`` the date (when the entry
was written, usually the day of the news); the body's text the description; the body's links
the references. The feed names no protocol, so :func:`protocol_of` reads it off the title;
the loss is read from the title when it states exactly one dollar figure.

The feed's content is CC BY-SA 3.0 (Molly White): descriptions taken from it carry that
licence and the attribution in :data:`INFO`.
"""

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from bs4 import BeautifulSoup
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
    soup,
)
from kamiyo.intel.sources.base import Collected, SourceInfo

log = logging.getLogger(__name__)

INFO = SourceInfo(
    name="web3isgoinggreat",
    title="Web3 Is Going Great",
    url="https://web3isgoinggreat.com/feed.xml",
    licence="CC BY-SA 3.0",
    attribution="Web3 Is Going Great by Molly White (https://web3isgoinggreat.com), CC BY-SA 3.0",
)
DESCRIPTION_LIMIT = 500

# What makes an entry a hack, exploit or theft: one of these words in its title or body.
HACK_WORDS = re.compile(
    r"\b(?:hack(?:s|ed|er|ers|ing)?|exploit(?:s|ed|er|ers)?|drain(?:s|ed|er|ers|ing)?"
    r"|stol(?:e|en)|steal(?:s|ing)?|theft|thefts|thie(?:f|ves)|attackers?"
    r"|compromised?|phish(?:ed|ing|er|ers)?|heist)\b",
    re.IGNORECASE,
)
# What makes it something else even so, when the title says it: insiders running off with the
# money (rug pulls, exit scams, Ponzi schemes) and legal follow-ups to an earlier hack (an
# arrest or a lawsuit is news about an incident, not a new one).
NOT_HACK_WORDS = re.compile(
    r"\b(?:rug[- ]?pull(?:s|ed)?|rugged|exit scam|ponzi|arrest(?:s|ed)?|indict(?:s|ed|ment)"
    r"|charged|sentenced|convicted|pleads?|pleaded|extradited|lawsuits?|sues?|sued)\b",
    re.IGNORECASE,
)

# Title words that end the subject of a headline ("BlueBenx halts ...", "X hacked for ...").
_VERB_WORDS = (
    "is was has have had gets got suffers suffered lose loses lost hacked exploited drained "
    "drain drains steal steals stole take takes took hit hits halts halted pauses paused "
    "freezes froze says said announces announced confirms confirmed discloses disclosed "
    "reports reported warns falls fell sees saw becomes became shuts shut"
)
_VERBS = frozenset(_VERB_WORDS.split())
# Who did it, not who it happened to: "Hacker steals $5M from X" names X after the verb.
_ACTOR_WORDS = "hacker hackers attacker attackers exploiter exploiters thief thieves someone"
_ACTORS = frozenset(_ACTOR_WORDS.split())
_AFTER = frozenset(("from", "of", "on", "at", "in"))
_ARTICLES = frozenset(("the", "a", "an"))
_POSSESSIVE = re.compile(r"['\u2019]s$")
_EDGE_PUNCTUATION = "\"'\u201c\u201d\u2018\u2019,:;!?()[]"


def is_hack(title: str, body: str) -> bool:
    """Whether an entry is about a hack, exploit or theft (the rule in docs/sources.md)."""
    if NOT_HACK_WORDS.search(title):
        return False
    return HACK_WORDS.search(title) is not None or HACK_WORDS.search(body) is not None


def _name_like(word: str) -> bool:
    return not word.startswith("$") and (word[:1].isdigit() or any(c.isupper() for c in word))


def protocol_of(title: str) -> tuple[str, list[str]]:
    """The protocol a headline is about, and the owner it names ("Axie Infinity's Ronin").

    The subject is the title up to the first headline verb; the protocol is its last run of
    name-like words; "'s" splits owner and product. When the subject only names the culprit
    ("Hacker", "Attacker"), the run after "from", "of", "on", "at" or "in" is used. When no
    name is found, the title itself is the name: unknown, but not made up.
    """
    words = [w.strip(_EDGE_PUNCTUATION) for w in plain_text(title).split()]
    words = [w for w in words if w]
    cut = next((i for i, w in enumerate(words) if w.lower() in _VERBS), len(words))
    run = _last_run(words[:cut])
    if not run or all(w.lower() in _ACTORS for w in run):
        after = words[cut + 1 :]
        start = next((i for i, w in enumerate(after) if w.lower() in _AFTER), None)
        run = _first_run(after[start + 1 :]) if start is not None else []
    owner = [w for w in run if _POSSESSIVE.search(w)]
    if owner:
        split = run.index(owner[-1]) + 1
        product = run[split:]
        names = [" ".join(run[:split])[:-2]]
        if product:
            return " ".join(product), names
        return names[0], []
    if run:
        return " ".join(run), []
    return shorten(plain_text(title), 200), []


def _last_run(words: list[str]) -> list[str]:
    """The last run of name-like words, without a leading article ("The", "A")."""
    runs: list[list[str]] = [[]]
    for word in words:
        if _name_like(word):
            runs[-1].append(word)
        elif runs[-1]:
            runs.append([])
    run = next((r for r in reversed(runs) if r), [])
    while len(run) > 1 and run[0].lower() in _ARTICLES:
        run = run[1:]
    return run


def _first_run(words: list[str]) -> list[str]:
    run: list[str] = []
    for word in words:
        if not _name_like(word):
            break
        run.append(word)
    return run


def _source_id(entry: Any) -> tuple[str, str]:
    for key in ("id", "link"):
        value = entry.get(key)
        if isinstance(value, str) and is_url(value.strip()):
            readable = urlsplit(value.strip()).path.rstrip("/").rsplit("/", 1)[-1]
            if readable:
                return readable[:200], value.strip()
    raise BadItemError("no entry URL to identify it by")


def _content(entry: Any) -> str:
    content = entry.get("content")
    if isinstance(content, list) and content and isinstance(content[0].get("value"), str):
        return str(content[0]["value"])
    summary = entry.get("summary")
    return summary if isinstance(summary, str) else ""


def _report(entry: Any, title: str, body: BeautifulSoup, url: str, source_id: str) -> SourceReport:
    day = entry_date(entry, "published_parsed", "updated_parsed")
    if day is None:
        raise BadItemError("no date")
    protocol, aliases = protocol_of(title)
    loss = one_dollar_amount(title)
    paragraph = body.find("p")
    description = " ".join(paragraph.get_text(" ").split()) if paragraph else ""
    links = (a.get("href") for a in body.find_all("a"))
    references = [h.strip() for h in links if isinstance(h, str) and is_url(h.strip())]
    return SourceReport(
        source=INFO.name,
        source_id=source_id,
        url=url,
        date=day,
        protocol=protocol,
        aliases=aliases,
        loss_usd=loss[0] if loss else None,
        loss_usd_basis="usd" if loss else None,
        loss_text=loss[1] if loss else None,
        description=shorten(description, DESCRIPTION_LIMIT) or None,
        references=list(dict.fromkeys(r for r in references if r != url)),
    )


def parse_atom(body: bytes) -> Collected:
    """The hack entries of a Web3 Is Going Great Atom body; the others are dropped."""
    feed = parse_feed(body, INFO.name)
    entries = feed.get("entries") or []
    collected = Collected(items_seen=len(entries))
    for index, entry in enumerate(entries):
        label = f"entry #{index}"
        try:
            title = entry.get("title")
            if not isinstance(title, str) or not title.strip():
                raise BadItemError("no title")
            title = plain_text(title)
            label = f"entry #{index} ({title[:60]})"
            source_id, url = _source_id(entry)
            content = soup(_content(entry))
            if not is_hack(title, " ".join(content.get_text(" ").split())):
                log.debug("%s: %s is not about a hack; dropped", INFO.name, label)
                continue
            collected.reports.append(_report(entry, title, content, url, source_id))
        except BadItemError as bad:
            skip(collected, log, INFO.name, label, str(bad))
        except ValidationError as error:
            skip(collected, log, INFO.name, label, invalid_fields(error))
    return collected


ADAPTER = DocumentAdapter(INFO, parse_atom)

"""Entity resolution: which stored incident, if any, a new report is about.

Every stored report has a compact entry in a :class:`ResolutionIndex` (kept in memory for one
ingest run: its size grows with the number of reports, not with their text), found through
blocking keys: shared attack transactions, attacker addresses, reference URLs, DeFiLlama ids,
name keys and name words. A new report is compared with the entries those keys find, and
:func:`decide` says whether two reports describe one incident, by which rule and with what
evidence. The rules, strongest first:

1. ``shared_transaction``: an attack transaction hash in both. A hash names one event.
2. ``shared_attacker``: an attacker address in both, within 30 days, with similar names (or
   within 2 days whatever the names). Attacker EOAs are reused across incidents, so an address
   alone is not enough.
3. ``shared_reference``: the same post-mortem or alert URL, within 30 days, names not unlike.
4. ``defillama_id``: the same DeFiLlama protocol id within 7 days.

Inside one source, a name listed twice is two incidents unless the reports share an attack
transaction, or the facts show a second listing of one exploit (``same_source_duplicate``, see
:func:`_same_source`).
5. ``name_date``: (between different sources, and not when reports days apart both list attack
   transactions and share none) names alike (``names.name_similarity`` of their keys, or one
   name's words inside the other's), dates close (exploit or disclosure dates within 14 days:
   Ronin was drained on 2022-03-23 and disclosed on 2022-03-29), chains not disjoint and losses
   not far apart. Different incidents of one protocol months apart stay apart.

Operators' corrections (``report_links``) override the rules: a report kept apart from another
never joins that report's incident; one kept together always does.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rapidfuzz import fuzz

from kamiyo.intel.names import name_key, name_similarity, name_words
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.vocabulary import AddressRole

ATTACKER_ROLES = frozenset({AddressRole.ATTACKER, AddressRole.ATTACK_CONTRACT})
VICTIM_ROLES = frozenset({AddressRole.VULNERABLE_CONTRACT, AddressRole.VICTIM})
NAME_WINDOW_DAYS = 14
HARD_KEY_WINDOW_DAYS = 30
NAME_THRESHOLD = 88.0
CONTAINED_SCORE = 80.0
# Two stated USD losses further apart than this factor are different events (first and final
# estimates of one theft differ, but rarely by more).
LOSS_FACTOR = 5.0
# Date buckets of the blocking index: a search looks in its own and the two next to it, so
# every report within one bucket's width (more than any window above) is found.
BUCKET_DAYS = 31
# Words too common in protocol names to tell two apart ("RL Token" and "RES Token").
GENERIC_WORDS = frozenset(
    [
        "token",
        "coin",
        "swap",
        "finance",
        "pool",
        "vault",
        "bank",
        "dao",
        "defi",
        "exchange",
        "market",
        "markets",
        "lending",
        "network",
        "protocol",
        "labs",
        "game",
        "games",
        "bridge",
        "wallet",
        "chain",
        "capital",
        "money",
        "hack",
        "farm",
        "farms",
        "yield",
        "the",
        "ai",
        "nft",
        "dex",
        "fi",
        "io",
        "xyz",
        "platform",
        "unverified",
        "unknown",
        "contract",
        "contracts",
        "foundation",
    ]
)
# Reference hosts too generic to identify an incident by URL alone.
_GENERIC_HOSTS = frozenset({"etherscan.io", "bscscan.com", "github.com", "t.me", "discord.gg"})


def _reference_key(url: str) -> str | None:
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().removeprefix("www.").removeprefix("mobile.")
    path = parts.path.rstrip("/")
    if not host or not path or host in _GENERIC_HOSTS:
        return None
    if host == "twitter.com":
        host = "x.com"
    if host == "x.com" and "/status/" not in path:
        return None  # an account, not a post about one incident
    return f"{host}{path}".lower()


def _distinctive(name: str) -> list[str]:
    return [w for w in name_words(name) if len(w) >= 2 and w not in GENERIC_WORDS]


@dataclass(slots=True)
class Entry:
    """What resolution remembers of one report."""

    report_key: tuple[str, str]  # (source, source_id)
    incident: int  # the incident's pk, or a negative handle for one not yet written
    dates: tuple[int, ...]  # ordinals of the exploit date and the disclosure date if any
    names: tuple[str, ...]  # name keys of the protocol and its aliases
    words: frozenset[str]  # the names' distinctive words (GENERIC_WORDS left out)
    cores: tuple[str, ...]  # each name's distinctive words run together
    chains: frozenset[str]
    loss_usd: float | None
    transactions: frozenset[str]
    attackers: frozenset[str]
    victims: frozenset[str]  # vulnerable contracts and victims
    references: frozenset[str]
    defillama_id: str | None


@dataclass(frozen=True)
class Registry:
    """What a protocol registry (DeFiLlama ``/protocols``) says about names: which keys name
    one protocol family (its name, slug and parent), and the name behind each DeFiLlama id."""

    family: dict[str, frozenset[str]] = field(default_factory=dict)
    by_id: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, protocols: Iterable[tuple[str, str, str | None, str | None]]) -> "Registry":
        """From (name, slug, parent, DeFiLlama id) rows."""
        family: defaultdict[str, set[str]] = defaultdict(set)
        by_id: dict[str, frozenset[str]] = {}
        for name, slug, parent, defillama_id in protocols:
            keys = frozenset(k for k in map(name_key, (name, slug, parent or "")) if k)
            for key in keys:
                family[key] |= keys
            if defillama_id:
                by_id[defillama_id] = keys
        return cls({k: frozenset(v) for k, v in family.items()}, by_id)

    def related(self, keys: Iterable[str], defillama_id: str | None) -> list[str]:
        found = [k for key in keys for k in self.family.get(key, ())]
        return found + list(self.by_id.get(defillama_id or "", ()))


NO_REGISTRY = Registry()


def entry_for(report: SourceReport, incident: int, registry: Registry = NO_REGISTRY) -> Entry:
    names = [report.protocol, *report.aliases]
    own = [k for k in map(name_key, names) if k]
    keys = tuple(dict.fromkeys([*own, *registry.related(own, report.defillama_id)]))
    dates = [report.date.toordinal()]
    if report.disclosed:
        dates.append(report.disclosed.toordinal())
    loss = report.loss_usd if report.loss_usd_basis not in (None, "nominal") else None
    return Entry(
        report_key=(report.source, report.source_id),
        incident=incident,
        dates=tuple(dates),
        names=keys,
        words=frozenset(w for n in names for w in _distinctive(n)),
        cores=tuple(dict.fromkeys(c for n in names if (c := "".join(_distinctive(n))))),
        chains=frozenset(report.chains),
        loss_usd=loss,
        transactions=frozenset(t.hash for t in report.transactions),
        attackers=frozenset(a.address for a in report.addresses if a.role in ATTACKER_ROLES),
        victims=frozenset(a.address for a in report.addresses if a.role in VICTIM_ROLES),
        references=frozenset(k for k in map(_reference_key, report.references) if k),
        defillama_id=report.defillama_id,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str
    score: float
    evidence: dict[str, Any]


def _days_apart(a: Entry, b: Entry) -> int:
    return min(abs(x - y) for x in a.dates for y in b.dates)


def _name_score(a: Entry, b: Entry) -> float | None:
    """How alike two reports' names are, 0-100; None when either name says nothing
    ("Unverified contract", "Token"): only hard keys can match those."""
    if not a.cores or not b.cores:
        return None
    best = max(
        (name_similarity(x, y) for x in a.names + a.cores for y in b.names + b.cores),
        default=0.0,
    )
    # Token-sort catches reordered words ("Bridge Harmony" against "Harmony Bridge").
    best = max(
        best,
        float(fuzz.token_sort_ratio(" ".join(sorted(a.words)), " ".join(sorted(b.words)))) * 0.98,
    )
    if a.words <= b.words or b.words <= a.words:
        # One name's distinctive words all in the other's ("Harmony" in "Harmony Horizon"):
        # a hint, not enough alone (Aztec Connect and Aztec V1 were two incidents).
        best = max(best, CONTAINED_SCORE)
    return round(best, 1)


def _losses_compatible(a: Entry, b: Entry) -> bool:
    if a.loss_usd is None or b.loss_usd is None or min(a.loss_usd, b.loss_usd) <= 0:
        return True
    return max(a.loss_usd, b.loss_usd) / min(a.loss_usd, b.loss_usd) <= LOSS_FACTOR


def _same_source(a: Entry, b: Entry, near: bool, evidence: dict[str, Any]) -> Decision | None:
    """One source listing a name twice within days usually means two incidents (SellToken01,
    02 and 03; Conic's two pools under one post-mortem). A duplicate shows in the facts: the
    same contract attacked by the same attacker or written up in the same post, or the same
    post where only one of the two lists the attack transaction (a second PoC of one exploit).
    """
    if not near:
        return None
    victims = a.victims & b.victims
    references = a.references & b.references
    if victims and (a.attackers & b.attackers or references):
        return Decision("same_source_duplicate", 0.9, {**evidence, "victims": sorted(victims)[:3]})
    if references and not (a.transactions and b.transactions):
        return Decision(
            "same_source_duplicate", 0.85, {**evidence, "references": sorted(references)[:3]}
        )
    return None


def decide(a: Entry, b: Entry) -> Decision | None:
    """Whether two reports describe one incident: the rule, score and evidence, or None."""
    days = _days_apart(a, b)
    shared_tx = a.transactions & b.transactions
    if days > HARD_KEY_WINDOW_DAYS and not shared_tx:
        return None  # every rule but the transaction's needs the dates close
    name = _name_score(a, b)
    evidence: dict[str, Any] = {"days_apart": days, "name_score": name}
    # PoC headers sometimes cite another incident's transaction, so even a shared hash needs
    # names that are not unlike (or a name that says nothing).
    if (shared := a.transactions & b.transactions) and (name is None or name >= 50):
        return Decision("shared_transaction", 1.0, {**evidence, "transactions": sorted(shared)[:3]})
    if name is None:
        return None
    near = days <= HARD_KEY_WINDOW_DAYS and name >= 70
    if a.report_key[0] == b.report_key[0]:
        return _same_source(a, b, near, evidence)
    if near and (shared := a.attackers & b.attackers):
        return Decision("shared_attacker", 0.95, {**evidence, "attackers": sorted(shared)[:3]})
    if near and (shared := a.references & b.references):
        return Decision("shared_reference", 0.9, {**evidence, "references": sorted(shared)[:3]})
    if a.transactions and b.transactions and days >= 2:
        # Days apart, both naming their attack transactions and none shared: two events
        # (Value DeFi's vBSWAP pool on 2021-05-05 and its vSafe three days later). On the same
        # day sources often list different transactions of one attack.
        return None
    if a.defillama_id and a.defillama_id == b.defillama_id and days <= 7:
        return Decision("defillama_id", 0.9, {**evidence, "defillama_id": a.defillama_id})
    # On the same day (or the next), one name inside the other is enough ("Parity" and "Parity
    # Multisig Wallet (library self-destruct)").
    threshold = CONTAINED_SCORE if days <= 1 else NAME_THRESHOLD
    if name < threshold or days > NAME_WINDOW_DAYS:
        return None
    # The same name within two days is one incident whatever the figures say: sources differ
    # wildly on loss (a nominal mint against money taken) and on chains (where funds went).
    if not (name == 100 and days <= 2):
        if not _losses_compatible(a, b):
            return None
        if a.chains and b.chains and not a.chains & b.chains:
            return None
    score = round(name / 100 * (1 - days / (2 * NAME_WINDOW_DAYS + 1)), 3)
    return Decision("name_date", score, evidence)


@dataclass
class ResolutionIndex:
    """Blocking index over every stored report, plus the operators' links."""

    entries: list[Entry] = field(default_factory=list)
    by_report: dict[tuple[str, str], Entry] = field(default_factory=dict)
    _blocks: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    apart: defaultdict[tuple[str, str], set[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    together: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # Sources whose every item is a distinct incident (a curated table): two of their reports
    # never share an incident, unless an operator says so.
    distinct_sources: frozenset[str] = frozenset()
    registry: Registry = NO_REGISTRY
    _sources_of: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))

    @staticmethod
    @staticmethod
    def _keys(entry: Entry, *, looking: bool = False) -> Iterator[str]:
        """The blocks an entry is filed under (or, ``looking``, the blocks to search).

        A transaction hash names one event whenever it happened. Every other key only
        matters within a few weeks, so it is filed per date bucket, and a search looks in
        the neighbouring buckets too: the blocks stay small however many years are stored.
        """
        yield from (f"t:{h}" for h in entry.transactions)
        soft = [
            *(f"a:{a}" for a in entry.attackers),
            *(f"r:{r}" for r in entry.references),
            *((f"d:{entry.defillama_id}",) if entry.defillama_id else ()),
            *(f"n:{n}" for n in entry.names + entry.cores),
            # Short words ("ka", "dex", "usd") block too much to be worth it; names share
            # their long words ("Harmony" in "Harmony Horizon").
            *(f"w:{w}" for w in entry.words if len(w) >= 4),
            # Name prefixes catch typos and run-together spellings the words miss.
            *(f"p:{n[:4]}" for n in entry.names if len(n) >= 4),
        ]
        buckets = {d // BUCKET_DAYS for d in entry.dates}
        if looking:
            buckets = {b + step for b in buckets for step in (-1, 0, 1)}
        for key in soft:
            for bucket in buckets:
                yield f"{key}@{bucket}"

    def move(self, entry: Entry, incident: int) -> None:
        """``entry``'s report now belongs to ``incident`` (a handle became a row)."""
        self._sources_of[incident].add(entry.report_key[0])
        entry.incident = incident

    def add(self, entry: Entry) -> None:
        old = self.by_report.get(entry.report_key)
        self._sources_of[entry.incident].add(entry.report_key[0])
        if old is not None:
            old.incident = entry.incident  # moved by an operator, or resolved again
            return
        position = len(self.entries)
        self.entries.append(entry)
        self.by_report[entry.report_key] = entry
        for key in self._keys(entry):
            self._blocks[key].append(position)

    def link(self, kind: str, left: tuple[str, str], right: tuple[str, str]) -> None:
        if kind == "apart":
            self.apart[left].add(right)
            self.apart[right].add(left)
        else:
            self.together[left] = right
            self.together[right] = left

    def candidates(self, entry: Entry) -> Iterable[Entry]:
        seen: set[int] = set()
        for key in self._keys(entry, looking=True):
            for position in self._blocks.get(key, ()):
                if position not in seen:
                    seen.add(position)
                    yield self.entries[position]

    def resolve(self, entry: Entry) -> tuple[Entry, Decision] | None:
        """The stored report ``entry`` best matches, and the decision; None when none does."""
        if (partner := self.together.get(entry.report_key)) and partner in self.by_report:
            return self.by_report[partner], Decision("operator_together", 1.0, {})
        kept_apart = self.apart.get(entry.report_key, set())
        barred = {self.by_report[k].incident for k in kept_apart if k in self.by_report}
        source = entry.report_key[0]
        distinct = source in self.distinct_sources
        best: tuple[Entry, Decision] | None = None
        for candidate in self.candidates(entry):
            if candidate.report_key == entry.report_key or candidate.incident in barred:
                continue
            if distinct and source in self._sources_of[candidate.incident]:
                continue
            decision = decide(entry, candidate)
            if decision and (best is None or decision.score > best[1].score):
                best = (candidate, decision)
        return best

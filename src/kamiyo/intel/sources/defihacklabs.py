"""DeFiHackLabs (https://github.com/SunWeb3Sec/DeFiHackLabs, Apache-2.0): reports of incidents.

Two ways in, one report shape:

- :func:`read_reports` reads the two CSV files extracted from the repository
  (``data/defihacklabs/`` in this repository): the offline build of the bundle.
- :data:`ADAPTER` reads the repository itself (raw GitHub files, a mirror, or a local checkout
  given by ``--from``): the README incident sections (``defihacklabs_format``) and the PoC
  headers they link (``defihacklabs_poc``). From the same commit it gives the same incidents
  as the CSV files, so the bundle can be rebuilt from upstream.
"""

import csv
import datetime as dt
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

from kamiyo.chains import normalize_chain
from kamiyo.intel.models import AddressFact, TransactionFact
from kamiyo.intel.reports import LossBasis, SourceReport
from kamiyo.intel.sources import defihacklabs_format as fmt
from kamiyo.intel.sources.base import Collected, Fetch, FetchError, SourceInfo
from kamiyo.intel.sources.defihacklabs_loss import parse_loss
from kamiyo.intel.sources.defihacklabs_poc import PocFacts, parse_poc
from kamiyo.intel.vocabulary import AddressRole

logger = logging.getLogger(__name__)

REPOSITORY = "https://github.com/SunWeb3Sec/DeFiHackLabs"
COMMIT = "b3719ce7fb93ee6f743853ede9471e1a8bed1de0"  # the commit data/defihacklabs/ came from
INFO = SourceInfo(
    name="defihacklabs",
    title="DeFiHackLabs",
    url="https://raw.githubusercontent.com/SunWeb3Sec/DeFiHackLabs/main",
    licence="Apache-2.0",
    attribution=f"Data extracted from DeFiHackLabs ({REPOSITORY}), Apache-2.0",
    bundled=True,
)
NAME = INFO.name
ATTRIBUTION = INFO.attribution
INCIDENTS_FILE = "defihacklabs_incidents.csv"
ADDRESSES_FILE = "defihacklabs_addresses.csv"
_RAW_BASE = re.compile(
    r"^https://raw\.githubusercontent\.com/SunWeb3Sec/DeFiHackLabs/(?P<ref>[^/]+)"
)


def blob_url(path: str, ref: str = COMMIT) -> str:
    """Where a person reads ``path`` of the repository at ``ref`` on GitHub."""
    return f"{REPOSITORY}/blob/{ref}/{path}"


# --- the CSV files (offline build) ------------------------------------------------------


def _read(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _chains(text: str) -> list[str]:
    return list(dict.fromkeys(normalize_chain(c) for c in text.split()))


def _csv_addresses(folder: Path) -> dict[str, list[AddressFact]]:
    by_incident: dict[str, list[AddressFact]] = defaultdict(list)
    for row in _read(folder / ADDRESSES_FILE):
        chains: list[str | None] = [*_chains(row["chain"])] or [None]
        for chain in chains:
            by_incident[row["incident_id"]].append(
                AddressFact(
                    role=AddressRole(row["role"]),
                    chain=chain,
                    address=row["address"].lower(),
                    label=row["label_in_poc"] or None,
                )
            )
    return by_incident


# Figures DeFiHackLabs gives in dollars that are the face value of tokens an overflow minted,
# not money taken (KAMIYO's reading, one line of reason each): marked ``nominal`` so they are
# shown but never summed. Beauty Chain's "$900 million" alone would be a tenth of all losses.
NOMINAL_LOSSES: dict[str, str] = {
    "20180422_beauty-chain": "BEC tokens minted by an overflow: the figure is their face value",
    "20180424_smartmesh": "SMT tokens minted by an overflow: the figure is their face value",
}


def _basis(source_id: str, basis: LossBasis | None) -> LossBasis | None:
    return "nominal" if basis and source_id in NOMINAL_LOSSES else basis


def read_reports(folder: Path) -> list[SourceReport]:
    """Every incident in ``folder``'s CSV files as a report, with its addresses attached."""
    addresses = _csv_addresses(folder)
    reports = []
    for row in _read(folder / INCIDENTS_FILE):
        month_only = len(row["date"]) == len("yyyy-mm")
        chains = _chains(row["chains"])
        poc_paths = row["poc_path"].split()
        # The README the section is in; three PoCs no README lists point at themselves.
        listed_in = row["listed_in"] or (poc_paths[0] if poc_paths else None)
        reports.append(
            SourceReport(
                source=INFO.name,
                source_id=row["incident_id"],
                url=blob_url(listed_in) if listed_in else None,
                date=dt.date.fromisoformat(f"{row['date']}-01" if month_only else row["date"]),
                date_precision="month" if month_only else "day",
                protocol=row["protocol"],
                chains=chains,
                loss_usd=float(row["loss_usd"]) if row["loss_usd"] else None,
                loss_usd_basis=_basis(
                    row["incident_id"], cast(LossBasis | None, row["loss_usd_basis"] or None)
                ),
                loss_text=row["loss_text"] or None,
                attack_type_raw=row["attack_type"] or None,
                addresses=addresses.get(row["incident_id"], []),
                transactions=[
                    TransactionFact(chain=chains[0] if chains else None, hash=h)
                    for h in dict.fromkeys(row["attack_txs"].lower().split())
                ],
                references=list(
                    dict.fromkeys([*row["reference_urls"].split(), *map(blob_url, poc_paths)])
                ),
                # A PoC that reproduces the exploit against a fork confirms it happened.
                confirmed=bool(poc_paths),
            )
        )
    return reports


# --- the repository's own files ---------------------------------------------------------


def section_report(
    section: fmt.Section, source_id: str, pocs: dict[str, PocFacts], ref: str
) -> SourceReport:
    """The report of one README section, with the facts of the PoC files read for it
    (``pocs``: repository path -> facts; empty when none could be read)."""
    facts = list(pocs.values())
    chains = list(dict.fromkeys(c for f in facts for c in f.chains))
    loss_text = section.loss_text or next((f.loss_text for f in facts if f.loss_text), None)
    loss_usd, basis = parse_loss(loss_text)
    addresses: dict[tuple[AddressRole, str | None, str], AddressFact] = {}
    everywhere: list[str | None] = [*chains] or [None]
    for poc in facts:
        for a in poc.addresses:
            # The explorer the header links says the chain; otherwise each chain forked.
            for chain in [a.chain] if a.chain else everywhere:
                fact = AddressFact(role=a.role, chain=chain, address=a.address, label=a.label)
                addresses.setdefault((a.role, chain, a.address), fact)
    transactions = {
        t.hash: TransactionFact(chain=t.chain or (chains[0] if chains else None), hash=t.hash)
        for poc in facts
        for t in poc.transactions
    }
    references = [
        *section.references,
        *(u for f in facts for u in f.references),
        *(blob_url(path, ref) for path in pocs),
    ]
    return SourceReport(
        source=INFO.name,
        source_id=source_id,
        url=blob_url(section.document, ref),
        date=section.day,
        protocol=section.protocol,
        chains=chains,
        loss_usd=loss_usd,
        loss_usd_basis=_basis(source_id, basis),
        loss_text=loss_text,
        attack_type_raw=section.attack,
        addresses=list(addresses.values()),
        transactions=list(transactions.values()),
        references=list(dict.fromkeys(references)),
        confirmed=bool(pocs),
    )


class DeFiHackLabs:
    """The DeFiHackLabs repository as a source (see :meth:`collect`)."""

    info = INFO

    async def collect(
        self,
        fetch: Fetch,
        base: str,
        *,
        since: dt.date | None = None,
        seen: Callable[[str], bool] = lambda source_id: False,
    ) -> Collected:
        """Every incident section of ``{base}/README.md`` and the ``past/<year>/README.md``
        archives it links, as reports.

        The READMEs are read whole every time (they are what says which incidents exist), but
        the ~860 PoC files only where needed: a section whose id is not ``seen`` is read with
        its PoC headers and reported; a seen one is re-read and reported only when it is dated
        on or after ``since`` (to pick up edits); a seen section older than ``since``, or any
        seen one when ``since`` is None, is not reported at all and its stored report stays as
        it is. ``items_seen`` counts every section found.

        A PoC file that cannot be had (:class:`FetchError` for every path tried) counts once
        in ``failed`` per section. A new section is still reported, without the header's
        facts (its chains, addresses and transactions stay unknown, and it is not marked
        confirmed): the README's date, name, loss and links are worth having, and the PoC is
        read again only if the section is re-read within ``since``. A seen section is not
        reported then: its stored report has the header's facts, and a poorer one must not
        replace it. A PoC answering "not modified" is treated the same way, without counting
        as failed.

        ``README.md`` answering "not modified" means nothing changed: no reports, one
        unchanged document. A README without incident sections raises
        :class:`~kamiyo.intel.sources.base.SourceFormatError`.
        """
        collected = Collected()
        root = base.rstrip("/")
        ref = match["ref"] if (match := _RAW_BASE.match(root)) else "main"
        main = await fetch(f"{root}/README.md")
        if main is None:
            collected.unchanged_documents += 1
            return collected
        main_text = main.body.decode("utf-8", errors="replace")
        sections = fmt.parse_readme(main_text, "README.md")
        for path in fmt.archive_paths(main_text):
            archive = await fetch(f"{root}/{path}")
            if archive is None:
                collected.unchanged_documents += 1
                continue
            sections += fmt.parse_readme(archive.body.decode("utf-8", errors="replace"), path)
        collected.items_seen = len(sections)
        cache: dict[str, PocFacts | str] = {}  # a PoC two sections share is read once
        for section, source_id in zip(sections, fmt.source_ids(sections), strict=True):
            new = not seen(source_id)
            if not new and (since is None or section.day < since):
                continue
            pocs: dict[str, PocFacts] = {}
            complete = True
            for candidates in fmt.poc_candidates(section):
                found = await _read_poc(fetch, root, candidates, cache)
                if isinstance(found, tuple):
                    pocs.setdefault(*found)
                    continue
                complete = False
                if found == "failed":
                    collected.failed += 1
                    logger.warning(
                        "defihacklabs: %s: PoC %s could not be fetched",
                        source_id,
                        candidates[0],
                    )
                else:
                    collected.unchanged_documents += 1
            if new or complete:
                collected.reports.append(section_report(section, source_id, pocs, ref))
        return collected


async def _read_poc(
    fetch: Fetch, root: str, candidates: list[str], cache: dict[str, PocFacts | str]
) -> tuple[str, PocFacts] | str:
    """The first of ``candidates`` that can be had, parsed, with its path; otherwise
    "unchanged" when one answered "not modified", else "failed"."""
    for path in candidates:
        if path not in cache:
            try:
                document = await fetch(f"{root}/{path}")
            except FetchError:
                cache[path] = "failed"
            else:
                text = document.body.decode("utf-8", errors="replace") if document else None
                cache[path] = parse_poc(text) if text is not None else "unchanged"
        found = cache[path]
        if isinstance(found, PocFacts):
            return path, found
        if found == "unchanged":
            return found
    return "failed"


ADAPTER = DeFiHackLabs()

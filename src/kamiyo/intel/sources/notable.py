"""Notable incidents: KAMIYO's own cited table of large and non-EVM incidents (data/notable/).

One CSV document, one row per incident: CeFi exchanges, bridges, wallets, Solana, Sui, Tron,
Bitcoin and more, 2016 onwards, each fact cited per row (``data/notable/README.md``). The table
classifies each row with categories of its own, mapped onto ours in
:data:`kamiyo.intel.vocabulary.NOTABLE_ATTACK_TYPES`.

Addresses and transaction hashes are kept only where KAMIYO can read them (EVM, Solana,
Bitcoin and Tron addresses; EVM hashes and Solana signatures): the others (NEM, EOS, XRP,
Bitcoin Cash "q..." addresses, Bitcoin txids) are facts we cannot store yet, so they are left out
rather than forced into a wrong shape.

The table lives in this repository: ``INFO.url`` is its path in a checkout (the bundle is built
from it, ``--from`` reads a copy anywhere else).
"""

import csv
import datetime as dt
import io
import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from kamiyo.chains import (
    AddressFamily,
    address_family,
    get_chain,
    normalize_address,
    normalize_chain,
    normalize_tx_hash,
)
from kamiyo.intel.models import AddressFact, TransactionFact
from kamiyo.intel.reports import LossBasis, SourceReport
from kamiyo.intel.sources.base import Collected, Fetch, SourceFormatError, SourceInfo
from kamiyo.intel.vocabulary import AddressRole, notable_attack_type

logger = logging.getLogger(__name__)

INFO = SourceInfo(
    name="notable",
    title="Notable incidents (KAMIYO compilation)",
    url="data/notable/notable_incidents.csv",
    licence="Apache-2.0 (KAMIYO's compilation of cited facts; no third-party prose)",
    attribution="Notable incidents compiled by KAMIYO from public sources cited per row "
    "(the De.Fi REKT database mirror liqtags/crypto-rekts, a DeFiLlama-derived exploit dataset, "
    "news, post-mortems and security-firm reports)",
    bundled=True,
    # Each row is one incident (the table was compiled that way), so two rows never merge.
    distinct_items=True,
    # No feed upstream: it ships in the bundle; `kamiyo ingest --source notable --from FILE`
    # imports a newer copy.
    enabled=False,
)
FILE = "notable_incidents.csv"

# The columns every row needs. The others (verified_by, notes) are for people and never read:
# notes sometimes name the DeFiHackLabs entry of the same incident, which the resolver must
# find by itself (the pairing is the answer key of its evaluation, kept with the tests).
REQUIRED_COLUMNS = (
    "incident_key",
    "date",
    "date_disclosed",
    "protocol",
    "aliases",
    "kind",
    "chains",
    "loss_usd",
    "funds_returned_usd",
    "attack_type",
    "attack_text",
    "attacker_addresses",
    "attack_txs",
    "description",
    "references",
)
_LOSS_BASES: frozenset[str] = frozenset({"usd", "nominal"})


def _split(text: str) -> list[str]:
    return list(dict.fromkeys(part.strip() for part in text.split(";") if part.strip()))


def _amount(text: str) -> float | None:
    return float(text) if text.strip() else None


def _day(text: str) -> dt.date | None:
    return dt.date.fromisoformat(text.strip()) if text.strip() else None


def _sole_chain(chains: list[str], family: AddressFamily) -> str | None:
    """The row's one chain of ``family``, or None when it names none or several (an EVM
    address on a row listing ethereum and bsc could be on either)."""
    matching = [chain for chain in chains if get_chain(chain).family is family]
    return matching[0] if len(matching) == 1 else None


def _addresses(text: str, chains: list[str]) -> list[AddressFact]:
    facts = []
    for raw in _split(text):
        try:
            family = address_family(raw)
        except ValueError:
            continue  # a family KAMIYO cannot read yet (NEM, EOS, XRP, ...)
        chain = _sole_chain(chains, family)
        facts.append(
            AddressFact(
                role=AddressRole.ATTACKER, chain=chain, address=normalize_address(raw, chain)
            )
        )
    return facts


def _transactions(text: str, chains: list[str]) -> list[TransactionFact]:
    facts = []
    for raw in _split(text):
        try:
            tx = normalize_tx_hash(raw)
        except ValueError:
            continue  # a Bitcoin or NEM transaction id: no form KAMIYO stores yet
        family = AddressFamily.EVM if tx.startswith("0x") else AddressFamily.SOLANA
        chain = _sole_chain(chains, family)
        facts.append(TransactionFact(chain=chain, hash=tx))
    return facts


def _report(row: dict[str, str]) -> SourceReport:
    if any(row.get(column) is None for column in REQUIRED_COLUMNS):
        raise ValueError("the row is cut short")
    chains = list(dict.fromkeys(normalize_chain(c) for c in _split(row["chains"])))
    loss = _amount(row["loss_usd"])
    basis = (row.get("loss_usd_basis") or "usd").strip()
    if basis not in _LOSS_BASES:
        raise ValueError(f"loss_usd_basis {basis!r} is not one of {sorted(_LOSS_BASES)}")
    returned = _amount(row["funds_returned_usd"])
    references = _split(row["references"])
    date = _day(row["date"])
    if date is None:
        raise ValueError("no date")
    loss_basis: LossBasis | None = None
    if loss is not None:
        loss_basis = "nominal" if basis == "nominal" else "usd"
    return SourceReport(
        source=INFO.name,
        source_id=row["incident_key"].strip(),
        url=references[0] if references else None,
        date=date,
        disclosed=_day(row["date_disclosed"]),
        protocol=row["protocol"].strip(),
        aliases=_split(row["aliases"]),
        kind=row["kind"].strip() or None,
        chains=chains,
        loss_usd=loss,
        loss_usd_basis=loss_basis,
        funds_returned_usd=returned,
        funds_returned=True if returned is not None else None,
        attack_type_raw=row["attack_text"].strip() or None,
        attack_type=notable_attack_type(row["attack_type"], row["attack_text"]),
        description=row["description"].strip() or None,
        addresses=_addresses(row["attacker_addresses"], chains),
        transactions=_transactions(row["attack_txs"], chains),
        references=references,
    )


def parse(body: bytes, location: str = INFO.url) -> Collected:
    """Every row of a notable-incidents CSV document as a report.

    A row that cannot be read (a bad date, an unknown chain or category) is counted as failed
    and logged once; a document without the expected header or rows raises SourceFormatError.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SourceFormatError(f"{location}: not UTF-8 text ({error.reason})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise SourceFormatError(
            f"{location}: not a notable-incidents table (missing columns: {', '.join(missing)})"
        )
    collected = Collected()
    try:
        for row in reader:
            collected.items_seen += 1
            try:
                collected.reports.append(_report(row))
            except (ValueError, ValidationError) as error:
                collected.failed += 1
                reason = str(error).splitlines()[0][:160]
                logger.warning(
                    "%s: row %s skipped: %s", location, row.get("incident_key") or "?", reason
                )
    except csv.Error as error:
        raise SourceFormatError(f"{location}: broken CSV ({error})") from None
    if collected.items_seen == 0:
        raise SourceFormatError(f"{location}: the table has a header but no incidents")
    return collected


def read_reports(path: Path) -> list[SourceReport]:
    """The reports of a notable-incidents CSV file (the bundled one: ``data/notable/``)."""
    return parse(path.read_bytes(), str(path)).reports


class NotableAdapter:
    """Fetches the one CSV document and parses it; ``since`` keeps the later incidents."""

    info = INFO

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
        collected = parse(document.body, document.location)
        if since is not None:
            collected.reports = [r for r in collected.reports if r.date >= since]
        return collected


ADAPTER = NotableAdapter()

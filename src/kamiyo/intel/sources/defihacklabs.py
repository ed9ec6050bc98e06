"""DeFiHackLabs incident facts (https://github.com/SunWeb3Sec/DeFiHackLabs, Apache-2.0).

Reads the two CSV files extracted from the repository's incident lists and PoC headers
(``data/defihacklabs/`` in this repository) into incident records.
"""

import csv
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from kamiyo.chains import normalize_chain
from kamiyo.intel.models import AddressFact, TransactionFact
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources.base import SourceInfo
from kamiyo.intel.vocabulary import AddressRole

NAME = "defihacklabs"
REPOSITORY = "https://github.com/SunWeb3Sec/DeFiHackLabs"
COMMIT = "b3719ce7fb93ee6f743853ede9471e1a8bed1de0"
ATTRIBUTION = f"Data extracted from DeFiHackLabs ({REPOSITORY}), Apache-2.0"
INFO = SourceInfo(
    name=NAME,
    title="DeFiHackLabs",
    url="https://raw.githubusercontent.com/SunWeb3Sec/DeFiHackLabs/main",
    licence="Apache-2.0",
    attribution=ATTRIBUTION,
    bundled=True,
)
INCIDENTS_FILE = "defihacklabs_incidents.csv"
ADDRESSES_FILE = "defihacklabs_addresses.csv"


def _read(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _chains(text: str) -> list[str]:
    return list(dict.fromkeys(normalize_chain(c) for c in text.split()))


def _date(text: str) -> tuple[dt.date, str]:
    if len(text) == len("yyyy-mm"):
        return dt.date.fromisoformat(f"{text}-01"), "month"
    return dt.date.fromisoformat(text), "day"


def _addresses(folder: Path) -> dict[str, list[AddressFact]]:
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


def read_reports(folder: Path) -> list[SourceReport]:
    """Every incident in ``folder``'s CSV files, with its addresses attached."""
    addresses = _addresses(folder)
    records = []
    for row in _read(folder / INCIDENTS_FILE):
        day, precision = _date(row["date"])
        chains = _chains(row["chains"])
        poc_paths = row["poc_path"].split()
        references = row["reference_urls"].split() + [
            f"{REPOSITORY}/blob/{COMMIT}/{path}" for path in poc_paths
        ]
        records.append(
            SourceReport(
                source=NAME,
                source_id=row["incident_id"],
                url=f"{REPOSITORY}/blob/{COMMIT}/{row['listed_in'] or poc_paths[0]}",
                date=day,
                date_precision=precision,
                protocol=row["protocol"],
                chains=chains,
                loss_usd=float(row["loss_usd"]) if row["loss_usd"] else None,
                loss_usd_basis=row["loss_usd_basis"] or None,
                loss_text=row["loss_text"] or None,
                attack_type_raw=row["attack_type"] or None,
                # A PoC that reproduces the exploit against a fork confirms it happened.
                confirmed=bool(poc_paths),
                addresses=addresses.get(row["incident_id"], []),
                transactions=[
                    TransactionFact(chain=chains[0] if chains else None, hash=h)
                    for h in dict.fromkeys(row["attack_txs"].lower().split())
                ],
                references=list(dict.fromkeys(references)),
            )
        )
    return records

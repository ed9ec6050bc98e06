"""SCRATCH (lead's local stand-in until helper D's module lands)."""

import csv
from pathlib import Path

from kamiyo.chains import normalize_chain
from kamiyo.intel.models import TransactionFact
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.sources.base import SourceInfo
from kamiyo.intel.vocabulary import AttackType

FILE = "notable_incidents.csv"
INFO = SourceInfo(
    name="notable",
    title="Notable",
    url="x",
    licence="x",
    attribution="x",
    bundled=True,
    distinct_items=True,
)
_MAP = {
    "key_compromise": "key_compromise",
    "logic_flaw": "business_logic",
    "oracle_manipulation": "oracle_manipulation",
    "price_manipulation": "price_manipulation",
    "reentrancy": "reentrancy",
    "flash_loan": "flash_loan",
    "access_control": "access_control",
    "bridge_verification": "bridge",
    "signature_replay": "signature",
    "rug_pull_insider": "rug_pull",
    "phishing_social_engineering": "key_compromise",
    "supply_chain_frontend": "other",
    "compiler_bug": "other",
    "rounding_precision": "precision_loss",
    "unknown": "unknown",
}


def read_reports(path: Path) -> list[SourceReport]:
    out = []
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            chains = [normalize_chain(c) for c in row["chains"].split(";") if c]
            out.append(
                SourceReport(
                    source="notable",
                    source_id=row["incident_key"],
                    url=(row["references"].split(";") or [None])[0],
                    date=row["date"],
                    disclosed=row["date_disclosed"] or None,
                    protocol=row["protocol"],
                    aliases=[a for a in row["aliases"].split(";") if a],
                    kind=row["kind"] or None,
                    chains=chains,
                    loss_usd=float(row["loss_usd"]) if row["loss_usd"] else None,
                    loss_usd_basis="usd" if row["loss_usd"] else None,
                    funds_returned_usd=float(row["funds_returned_usd"])
                    if row["funds_returned_usd"]
                    else None,
                    funds_returned=True if row["funds_returned_usd"] else None,
                    attack_type=AttackType(_MAP[row["attack_type"]]),
                    attack_type_raw=row["attack_text"] or None,
                    description=row["description"] or None,
                    transactions=[
                        TransactionFact(chain=None, hash=h.lower())
                        for h in row["attack_txs"].split(";")
                        if h
                    ],
                    references=[u for u in row["references"].split(";") if u],
                )
            )
    return out


class _Adapter:
    info = INFO

    async def collect(self, fetch, base, *, since=None, seen=lambda s: False):  # type: ignore[no-untyped-def]
        import tempfile

        from kamiyo.intel.sources.base import Collected

        document = await fetch(base)
        if document is None:
            return Collected(unchanged_documents=1)
        with tempfile.NamedTemporaryFile(suffix=".csv") as f:
            f.write(document.body)
            f.flush()
            reports = read_reports(Path(f.name))
        return Collected(reports=reports, items_seen=len(reports))


ADAPTER = _Adapter()

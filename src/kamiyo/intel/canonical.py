"""An incident's own fields, chosen from its reports by one stated rule (``docs/sources.md``).

- **Order of trust** between sources, for fields one report must supply (name, description,
  attack type, kind): the cited compilation (``notable``) first, then DeFiLlama, DeFiHackLabs,
  SlowMist, rekt.news, Web3 Is Going Great; a source not listed comes last. Within a source,
  the earlier report.
- **Date**: the earliest exploit date stated to the day (a month-only date only when no report
  gives a day); **disclosed**: the earliest disclosure date any report states.
- **Loss**: from the reports with the best basis (a dollar figure, then a stablecoin amount,
  then a bare number), the median of their figures, with the loss text of the report nearest
  it. A nominal token value (tokens minted or frozen, not money taken) is used only when no
  report gives another figure, and keeps its ``nominal`` basis so totals can leave it out.
- **Description**: a source's summary where it is written in our own words (the notable
  table's), else one sentence composed from the chosen facts; other sources' prose stays in
  their reports.
- **Attack type**: the most trusted report whose classification is not unknown or other.
- **Funds returned**: true when any report says so, with the largest amount stated.
- **Chains, addresses, transactions, references, names**: the union over the reports.
- **Status**: confirmed when any report reproduces the exploit (a proof of concept).

Every report's own figures are kept and shown in the incident's ``sources``.
"""

import statistics
from dataclasses import dataclass
from typing import Any

from kamiyo.chains import get_chain
from kamiyo.intel.names import name_key
from kamiyo.intel.reports import SourceReport
from kamiyo.intel.vocabulary import AttackType, classify_attack

# Sources whose descriptions are written in our own words (the notable table's are).
OWN_WORDS = frozenset({"notable"})
TRUST_ORDER = ("notable", "defillama", "defihacklabs", "slowmist", "rekt", "web3isgoinggreat")
_BASIS_ORDER = ("usd", "stablecoin", "assumed_usd")
_VAGUE = frozenset({AttackType.UNKNOWN, AttackType.OTHER})


def chain_name(slug: str) -> str:
    try:
        return get_chain(slug).name
    except ValueError:
        return slug


def _trust(report: SourceReport) -> int:
    try:
        return TRUST_ORDER.index(report.source)
    except ValueError:
        return len(TRUST_ORDER)


def attack_type_of(report: SourceReport) -> AttackType:
    return report.attack_type or classify_attack(report.attack_type_raw)


@dataclass(frozen=True)
class Canonical:
    """The incident row's fields (``db.tables.Incident``), children and names."""

    fields: dict[str, Any]
    chains: list[str]
    addresses: list[dict[str, Any]]
    transactions: list[dict[str, Any]]
    references: list[str]
    names: dict[str, str]  # name key -> the name as first written
    # The description's words for the search index: a source's summary only. A sentence
    # composed from the facts repeats words indexed already (in fields that are not stemmed:
    # indexing the name again in the stemmed text would let "axie" find "Axioma").
    searchable_description: str | None = None


def _loss(reports: list[SourceReport]) -> tuple[float | None, str | None, str | None]:
    for basis in _BASIS_ORDER:
        figures = [r for r in reports if r.loss_usd_basis == basis and r.loss_usd is not None]
        if figures:
            median = statistics.median(r.loss_usd or 0.0 for r in figures)
            nearest = min(figures, key=lambda r: abs((r.loss_usd or 0.0) - median))
            return round(median, 2), basis, nearest.loss_text
    nominal = [r for r in reports if r.loss_usd_basis == "nominal" and r.loss_usd is not None]
    if nominal:
        return nominal[0].loss_usd, "nominal", nominal[0].loss_text
    texts = [r.loss_text for r in reports if r.loss_text]
    return None, None, texts[0] if texts else None


def _usd(amount: float) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if amount >= size:
            return f"${amount / size:.1f}{unit}".replace(".0", "")
    return f"${amount:,.0f}"


def _description(
    ranked: list[SourceReport],
    first: SourceReport,
    chains: list[str],
    loss_usd: float | None,
    basis: str | None,
    loss_text: str | None,
    attack_from: SourceReport,
) -> str:
    """A source's summary where it is in our own words; else one sentence from the facts.

    Other sources' descriptions are their prose (articles, feed summaries): they stay in
    their reports and are not shown as ours.
    """
    for report in ranked:
        if report.description and report.source in OWN_WORDS:
            return report.description
    where = " and ".join(chain_name(c) for c in chains[:3])
    if loss_usd is not None and basis != "nominal":
        lost = f"about {_usd(loss_usd)}"
    else:
        lost = loss_text or "an amount no source states"
    how = attack_from.attack_type_raw or attack_type_of(attack_from).value.replace("_", " ")
    on = f" on {where}" if where else ""
    return f"{first.protocol}{on} lost {lost} on {first.date.isoformat()} ({how})."


def entry(report: SourceReport) -> dict[str, Any]:
    """What an incident's ``sources`` list shows of one report."""
    return {
        "source": report.source,
        "source_id": report.source_id,
        "url": report.url,
        "date": report.date.isoformat(),
        "loss_usd": report.loss_usd,
        "loss_text": report.loss_text,
        "attack": report.attack_type_raw,
    }


def canonical(reports: list[SourceReport]) -> Canonical:
    """The incident ``reports`` describe. ``reports`` must not be empty."""
    ranked = sorted(reports, key=_trust)
    by_day = [r for r in reports if r.date_precision == "day"] or reports
    first = min(by_day, key=lambda r: r.date)
    disclosed = [r.disclosed for r in reports if r.disclosed]
    loss_usd, basis, loss_text = _loss(ranked)
    typed = [r for r in ranked if attack_type_of(r) not in _VAGUE]
    attack_from = typed[0] if typed else next((r for r in ranked if r.attack_type_raw), ranked[0])
    returned = [r.funds_returned_usd for r in reports if r.funds_returned_usd]
    said_returned = [r.funds_returned for r in ranked if r.funds_returned is not None]
    chains = list(dict.fromkeys(c for r in ranked for c in r.chains))
    addresses = list(
        {
            (a.role.value, a.chain, a.address): {
                "role": a.role.value,
                "chain": a.chain,
                "address": a.address,
                "label": a.label,
            }
            for r in ranked
            for a in r.addresses
        }.values()
    )
    transactions = list(
        {
            (t.chain, t.hash): {"chain": t.chain, "hash": t.hash}
            for r in ranked
            for t in r.transactions
        }.values()
    )
    names: dict[str, str] = {}
    for r in ranked:
        for name in (r.protocol, *r.aliases):
            if key := name_key(name):
                names.setdefault(key, name)
    fields: dict[str, Any] = {
        "date": first.date,
        "date_precision": first.date_precision,
        "disclosed": min(disclosed) if disclosed else None,
        "protocol": ranked[0].protocol,
        "kind": next((r.kind for r in ranked if r.kind), None),
        "loss_usd": loss_usd,
        "loss_usd_basis": basis,
        "loss_text": loss_text,
        "attack_type": attack_type_of(attack_from).value,
        "attack_type_raw": attack_from.attack_type_raw,
        "description": _description(ranked, first, chains, loss_usd, basis, loss_text, attack_from),
        "status": "confirmed" if any(r.confirmed for r in reports) else "reported",
        "funds_returned": bool(returned) or (said_returned[0] if said_returned else None),
        "funds_returned_usd": max(returned) if returned else None,
        "chain_list": chains,
        "source_list": [entry(r) for r in sorted(reports, key=lambda r: (r.date, _trust(r)))],
    }
    own = next((r.description for r in ranked if r.description and r.source in OWN_WORDS), None)
    return Canonical(
        searchable_description=own,
        fields=fields,
        chains=chains,
        addresses=addresses,
        transactions=transactions,
        references=list(dict.fromkeys(u for r in ranked for u in r.references)),
        names=names,
    )

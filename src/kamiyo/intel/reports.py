"""What a source adapter hands in: one report of one incident, as that source tells it.

Reports are kept as reported. Entity resolution (``intel/resolution``) attaches each to an
incident; the incident's canonical fields are chosen from its reports (``intel/canonical.py``).
Unknown stays unknown: an adapter leaves a field empty rather than guess, and never makes up an
identifier (a transaction hash, an address, a date the source does not give).
"""

import datetime as dt
import hashlib
import json
from typing import Literal

from pydantic import Field

from kamiyo.intel.models import AddressFact, FrozenModel, TransactionFact
from kamiyo.intel.vocabulary import AttackType

# How a USD loss figure was read: stated in dollars, a stablecoin amount taken 1:1, a bare
# number with no unit, or the nominal value of tokens minted or frozen rather than money taken
# (Beauty Chain's "$900M"): nominal figures never count towards totals.
LossBasis = Literal["usd", "stablecoin", "assumed_usd", "nominal"]
DatePrecision = Literal["day", "month"]


class SourceReport(FrozenModel):
    """One source's account of one incident."""

    source: str = Field(pattern=r"^[a-z0-9_]{1,32}$", description="The adapter's name.")
    source_id: str = Field(
        min_length=1,
        max_length=200,
        description="The source's own stable id for the item (a slug, a guid, a row key).",
    )
    url: str | None = Field(default=None, description="Where a person reads this report.")
    date: dt.date = Field(description="The exploit date as the source gives it.")
    date_precision: DatePrecision = "day"
    disclosed: dt.date | None = Field(
        default=None, description="A disclosure date, when the source gives one apart."
    )
    protocol: str = Field(min_length=1, max_length=200, description="The name the source uses.")
    aliases: list[str] = Field(default=[], description="Other names the source gives.")
    kind: str | None = Field(
        default=None, description="defi, bridge, cex, wallet, gaming or other, when stated."
    )
    chains: list[str] = Field(default=[], description="Chain slugs (kamiyo.chains).")
    loss_usd: float | None = Field(default=None, ge=0)
    loss_usd_basis: LossBasis | None = None
    loss_text: str | None = Field(default=None, description="The loss as the source wrote it.")
    funds_returned_usd: float | None = Field(default=None, ge=0)
    funds_returned: bool | None = Field(
        default=None, description="True or False only where the source says so."
    )
    attack_type_raw: str | None = Field(default=None, description="The source's own wording.")
    attack_type: AttackType | None = Field(
        default=None,
        description="The source's own classification when it uses our vocabulary; otherwise "
        "None and the store classifies attack_type_raw.",
    )
    description: str | None = None
    addresses: list[AddressFact] = Field(default_factory=list)
    transactions: list[TransactionFact] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    defillama_id: str | None = Field(default=None, max_length=64)
    confirmed: bool = Field(
        default=False, description="Reproduced (a proof of concept), not only reported."
    )

    def fingerprint(self) -> str:
        """A digest of the whole report: equal digests mean nothing changed."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ProtocolRecord(FrozenModel):
    """A protocol's metadata from a registry (DeFiLlama ``/protocols``)."""

    source: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    slug: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    defillama_id: str | None = Field(default=None, max_length=64)
    parent: str | None = Field(default=None, description="Parent protocol's name or slug.")
    category: str | None = None
    chains: list[str] = Field(default_factory=list)
    url: str | None = None
    audits: int | None = Field(default=None, ge=0, description="Number of audits stated.")
    audit_links: list[str] = Field(default_factory=list)
    audit_note: str | None = None
    forked_from: list[str] = Field(default=[], description="Names of protocols it forks.")
    oracles: list[str] = Field(default_factory=list)
    listed_at: dt.datetime | None = None
    tvl_usd: float | None = Field(default=None, ge=0)

"""The intel API's data: what adapters hand in, what searches and look-ups hand out."""

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from kamiyo.chains import normalize_address, normalize_chain
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import AddressRole, AttackType

ChainName = Annotated[str, AfterValidator(normalize_chain)]
Address = Annotated[str, AfterValidator(normalize_address)]

MAX_QUERY_LENGTH = 256
HARD_RESULT_CAP = 1000


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)


# --- what a source adapter produces -------------------------------------------------------


class AddressFact(FrozenModel):
    role: AddressRole
    chain: str | None = None
    address: str
    label: str | None = None


class TransactionFact(FrozenModel):
    chain: str | None = None
    hash: str


class SourceFact(FrozenModel):
    name: str = Field(description="The dataset or feed, e.g. 'defihacklabs'.")
    ref: str | None = Field(default=None, description="Where in the source, e.g. a file path.")
    url: str | None = None


class IncidentRecord(FrozenModel):
    """One incident as a source reports it, before the store derives anything from it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")
    date: dt.date
    date_precision: Literal["day", "month"] = "day"
    protocol: str = Field(min_length=1, max_length=200)
    chains: list[str] = []
    loss_usd: float | None = Field(default=None, ge=0)
    loss_usd_basis: Literal["usd", "stablecoin", "assumed_usd"] | None = None
    loss_text: str | None = None
    attack_type_raw: str | None = None
    description: str | None = None
    status: Literal["reported", "confirmed"] = "reported"
    funds_returned: bool | None = None
    addresses: list[AddressFact] = []
    transactions: list[TransactionFact] = []
    references: list[str] = []
    source: SourceFact


# --- what the intel API answers -----------------------------------------------------------


class IncidentSummary(FrozenModel):
    id: str
    date: dt.date
    date_precision: Literal["day", "month"]
    protocol: str
    chains: list[str]
    loss_usd: float | None = Field(description="USD at time of attack; see loss_usd_basis.")
    loss_usd_basis: str | None = Field(
        description="usd: stated in dollars; stablecoin: stablecoin amount taken 1:1; "
        "assumed_usd: a bare number with no unit; null: no USD figure (see loss_text)."
    )
    loss_text: str | None = Field(description="The loss as the source wrote it.")
    attack_type: AttackType
    attack_type_raw: str | None
    sources: list[str] = Field(description="Security firms whose reports the references cite.")


class AddressInfo(FrozenModel):
    role: AddressRole
    chain: str | None
    address: str
    label: str | None


class TransactionInfo(FrozenModel):
    chain: str | None
    hash: str


class ReferenceInfo(FrozenModel):
    url: str
    firm: str | None


class ProvenanceInfo(FrozenModel):
    source: str
    source_ref: str | None
    source_url: str | None
    ingested_at: dt.datetime


class Incident(IncidentSummary):
    description: str | None
    status: str
    funds_returned: bool | None
    addresses: list[AddressInfo]
    transactions: list[TransactionInfo]
    references: list[ReferenceInfo]
    provenance: list[ProvenanceInfo]


class SortOrder(StrEnum):
    RELEVANCE = "relevance"
    RECENT = "recent"
    LOSS = "loss"


class SearchQuery(FrozenModel):
    query: str | None = Field(
        default=None,
        max_length=MAX_QUERY_LENGTH,
        description="Words to find in protocol names, attack types and descriptions.",
    )
    chain: ChainName | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    min_loss_usd: float | None = Field(default=None, ge=0)
    attack_type: AttackType | None = None
    address: Address | None = Field(
        default=None, description="Only incidents that list this address (any role)."
    )
    sort: SortOrder | None = Field(
        default=None, description="Default: relevance with a query, else most recent first."
    )
    limit: int = Field(default=10, ge=1, le=HARD_RESULT_CAP)

    @field_validator("query")
    @classmethod
    def _has_words(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not query_terms(value):
            if not any(ch.isalnum() for ch in value):
                raise ValueError("query has no letters or digits to search for")
            raise ValueError("query has only words too common to search for, such as 'the'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must not be after until")
        if self.sort is SortOrder.RELEVANCE and self.query is None:
            raise ValueError("sort=relevance needs a query")
        return self

    @property
    def terms(self) -> list[str]:
        return query_terms(self.query) if self.query else []

    @property
    def effective_sort(self) -> SortOrder:
        if self.sort is not None:
            return self.sort
        return SortOrder.RELEVANCE if self.query else SortOrder.RECENT


class SearchResult(FrozenModel):
    incidents: list[IncidentSummary]
    count: int
    truncated: bool = Field(description="More incidents match than were returned.")
    limit: int = Field(description="The cap that applied to this search.")


class StatsGroup(StrEnum):
    CHAIN = "chain"
    YEAR = "year"
    MONTH = "month"
    ATTACK_TYPE = "attack_type"


class StatsQuery(FrozenModel):
    group_by: StatsGroup = StatsGroup.YEAR
    since: dt.date | None = None
    until: dt.date | None = None
    chain: ChainName | None = None


class StatsRow(FrozenModel):
    key: str
    incidents: int
    total_loss_usd: float = Field(description="Sum of loss_usd over incidents that have one.")
    incidents_with_loss: int


class Stats(FrozenModel):
    group_by: StatsGroup
    rows: list[StatsRow]
    incidents: int
    total_loss_usd: float
    note: str | None = None

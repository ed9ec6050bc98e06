"""The intel API's data: what adapters hand in, what searches and look-ups hand out."""

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from kamiyo.chains import normalize_address, normalize_chain, normalize_tx_hash
from kamiyo.db.bounds import unstorable
from kamiyo.intel import pages
from kamiyo.intel.fields import Day, UsdAmount, WholeNumber
from kamiyo.intel.text import query_terms
from kamiyo.intel.vocabulary import AddressRole, AttackType

ChainName = Annotated[str, AfterValidator(normalize_chain)]
Address = Annotated[str, AfterValidator(normalize_address)]

MAX_QUERY_LENGTH = 256
HARD_RESULT_CAP = 1000

# Filters several queries share, described once for every surface that shows them.
Chain = Annotated[
    ChainName | None,
    Field(
        max_length=40,
        description="Chain slug such as ethereum, bsc, arbitrum, base, polygon, optimism, "
        "solana (eth, bnb, matic and similar names are understood).",
    ),
]
Since = Annotated[Day | None, Field(description="Earliest incident date, YYYY-MM-DD.")]
Until = Annotated[Day | None, Field(description="Latest incident date, YYYY-MM-DD.")]


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)


class QueryModel(FrozenModel):
    """What a caller asks: every operation's query. Every text value, whatever its field
    (one added later too), is refused if it holds what no database can (``db.storable``)."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: object) -> object:
        # On the model, not on a str type: wrapping a type in a check would turn the fields'
        # own max_length into a generic constraint ("at most 256 items").
        if isinstance(value, str) and (problem := unstorable(value)) is not None:
            raise ValueError(f"must not contain {problem}")
        return value


# --- facts a source report carries (intel/reports.py) --------------------------------------


class AddressFact(FrozenModel):
    role: AddressRole
    chain: str | None = None
    address: str
    label: str | None = None


class TransactionFact(FrozenModel):
    chain: str | None = None
    hash: str


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
        "assumed_usd: a bare number with no unit; nominal: the face value of tokens minted or "
        "frozen, not money taken (left out of totals); null: no USD figure (see loss_text)."
    )
    loss_text: str | None = Field(description="The loss as the source wrote it.")
    attack_type: AttackType
    attack_type_raw: str | None
    sources: list["ReportEntry"] = Field(
        description="One entry per source report of this incident, oldest first: each "
        "source's own date, loss and attack wording (the incident's fields are chosen from "
        "them by the rule in docs/sources.md)."
    )
    firms: list[str] = Field(description="Security firms whose posts the references cite.")


class ReportEntry(FrozenModel):
    source: str = Field(description="The source, e.g. defihacklabs, notable, defillama.")
    source_id: str = Field(description="The item's id within that source.")
    url: str | None = Field(description="Where the source's report can be read.")
    date: dt.date = Field(description="The exploit date this source gives.")
    loss_usd: float | None = Field(description="The USD loss this source gives, if any.")
    loss_text: str | None = Field(description="The loss as this source wrote it.")
    attack: str | None = Field(description="This source's wording of the root cause.")


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


class Incident(IncidentSummary):
    description: str | None = Field(
        description="One sentence: a summary in KAMIYO's words, or composed from the facts."
    )
    disclosed: dt.date | None = Field(description="When it was disclosed, if a source says.")
    kind: str | None = Field(description="defi, bridge, cex, wallet, gaming or other.")
    status: str = Field(description="confirmed (reproduced by a proof of concept) or reported.")
    funds_returned: bool | None = Field(description="Whether funds were returned (unknown: null).")
    funds_returned_usd: float | None
    aliases: list[str] = Field(description="Other names the sources use for it.")
    addresses: list[AddressInfo]
    transactions: list[TransactionInfo]
    references: list[ReferenceInfo]


class SortOrder(StrEnum):
    RELEVANCE = "relevance"
    RECENT = "recent"
    LOSS = "loss"


class SearchQuery(QueryModel):
    query: str | None = Field(
        default=None,
        max_length=MAX_QUERY_LENGTH,
        description="Words to find, e.g. 'euler', 'curve finance', 'flash loan', 'private "
        "key'. Incidents going by that exact name (any spelling or alias) come first, then "
        "those of an attack type the query names, then those matching every word as a prefix "
        "in names, attack types and descriptions. Omit to list by filters only.",
    )
    chain: Chain = None
    since: Since = None
    until: Until = None
    min_loss_usd: UsdAmount | None = Field(
        default=None, description="Only incidents that lost at least this many USD."
    )
    attack_type: AttackType | None = Field(default=None, description="Only this attack type.")
    address: Address | None = Field(
        default=None,
        max_length=64,
        description="Only incidents that list this address (any role): EVM 0x… or Solana base58.",
    )
    sort: SortOrder | None = Field(
        default=None,
        description="relevance (default with a query), recent (default without), loss.",
    )
    limit: WholeNumber = Field(
        default=10, ge=1, le=HARD_RESULT_CAP, description="How many incidents at most."
    )
    cursor: str | None = Field(
        default=None,
        max_length=200,
        description="next_cursor of an earlier answer to the same search: its next page.",
    )

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
        if self.cursor is not None:
            pages.decode(self.cursor, self.digest)  # refused here, not when it is used
        return self

    @property
    def digest(self) -> str:
        """Names this search apart from its page (the cursor and the page's size)."""
        return pages.search_digest(self.model_dump(exclude={"cursor", "limit"}))

    @property
    def offset(self) -> int:
        return pages.decode(self.cursor, self.digest) if self.cursor else 0

    @property
    def terms(self) -> list[str]:
        return query_terms(self.query) if self.query else []

    @property
    def effective_sort(self) -> SortOrder:
        if self.sort is not None:
            return self.sort
        return SortOrder.RELEVANCE if self.query else SortOrder.RECENT


class IncidentList(FrozenModel):
    """Incidents answering a question, capped: ``note`` says why a list stopped short."""

    incidents: list[IncidentSummary]
    count: int
    truncated: bool = Field(description="More incidents match than were returned.")
    limit: int = Field(description="The cap that applied to this answer.")
    note: str | None = Field(
        default=None,
        description="Set when the caller's plan capped the list: the cap, and how to raise it.",
    )


class SearchResult(IncidentList):
    suggestions: list[str] = Field(
        default=[],
        description="Only when nothing matched: known protocol names one or two edits from the "
        "query, best first (at most 5); search again with one of them.",
    )
    note: str | None = Field(
        default=None,
        description="Set when the caller's plan capped the list (the cap, and how to raise it), "
        "or when nothing matched: the names to try instead, or the filters that hid a known "
        "protocol's incidents.",
    )
    next_cursor: str | None = Field(
        default=None,
        description="When more match: call again with the same arguments and cursor set to "
        "this for the next page.",
    )
    ranked_newest: int | None = Field(
        default=None,
        description="Set when the words match more incidents than a search by relevance ranks: "
        "it ranked this many, the most recently recorded matches, and left older ones out "
        "(name matches and attack-type matches come first regardless); add filters or sort "
        "by date to reach the rest.",
    )


class ExploitQuery(QueryModel):
    exploit_id: str = Field(
        min_length=1,
        max_length=128,
        description="Incident id, e.g. 20230313_eulerfinance (ids come from search_exploits).",
    )


TxHash = Annotated[str, AfterValidator(normalize_tx_hash)]


class TransactionQuery(QueryModel):
    tx_hash: TxHash = Field(
        max_length=100,
        description="An attack transaction: EVM hash (0x + 64 hex digits) or Solana signature.",
    )


class TransactionMatches(IncidentList):
    tx_hash: str
    summary: str


class StatsGroup(StrEnum):
    CHAIN = "chain"
    YEAR = "year"
    MONTH = "month"
    ATTACK_TYPE = "attack_type"


class StatsQuery(QueryModel):
    group_by: StatsGroup = Field(
        default=StatsGroup.YEAR, description="chain, year, month or attack_type."
    )
    since: Since = None
    until: Until = None
    chain: Chain = None

    @field_validator("group_by", mode="before")
    @classmethod
    def _dashes(cls, value: object) -> object:
        # The command line spells it attack-type.
        return value.replace("-", "_") if isinstance(value, str) else value


class StatsRow(FrozenModel):
    key: str
    incidents: int
    total_loss_usd: float = Field(
        description="Sum of loss_usd over incidents that have one, nominal token values "
        "(loss_usd_basis nominal) left out."
    )
    incidents_with_loss: int


class Stats(FrozenModel):
    group_by: StatsGroup
    rows: list[StatsRow]
    incidents: int
    total_loss_usd: float
    note: str | None = None

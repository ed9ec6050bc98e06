"""The wallet screen's question and answer (``check_wallet_interactions``).

The answer is built whole even where KAMIYO cannot fill it yet: ``counterparties`` and
``approvals`` come from reading the address's history, and ``coverage`` says whether that
happened. Every match says in its own words what it means for someone about to deal with the
address.
"""

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from kamiyo.chains import checked_address, normalize_address
from kamiyo.intel.models import Chain, FrozenModel, QueryModel
from kamiyo.intel.vocabulary import AddressRole

ScreenedAddress = Annotated[str, AfterValidator(checked_address)]


class AddressScreenQuery(QueryModel):
    wallet_address: ScreenedAddress = Field(
        max_length=100,
        description="The address to screen: EVM (0x + 40 hex digits; a mixed-case address must "
        "carry a right EIP-55 checksum), Solana (base58, 32 bytes), Bitcoin or Tron.",
    )
    chain: Chain = Field(
        default=None,
        max_length=40,
        description="The chain to screen on (ethereum, bsc, base, solana...). An EVM address "
        "is the same account on every EVM chain: its listings are reported whichever EVM "
        "chain is asked. Leave it out to screen every chain.",
    )

    cursor: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Continue the counterparties list: the next_cursor of an earlier answer "
        "(the history is kept a few minutes, so the next page reads nothing again).",
    )

    @field_validator("chain")
    @classmethod
    def _address_fits_chain(cls, chain: str | None, info: ValidationInfo) -> str | None:
        address = info.data.get("wallet_address")
        if chain is not None and address is not None:
            normalize_address(address, chain)  # ValueError: an EVM address on solana, say
        return chain


class Verdict(StrEnum):
    ALLOW = "allow"  # history read in full, nothing found
    WARN = "warn"  # exposure found: look before dealing with it
    BLOCK = "block"  # sanctioned, or hostile itself: do not deal with it
    UNKNOWN = "unknown"  # not enough was read to say: never a clean bill


Level = Literal["low", "medium", "high", "critical"]


class Stance(StrEnum):
    """What a role says about the address, for someone about to deal with it."""

    HOSTILE = "hostile"  # it acted against a protocol
    EXPOSURE = "exposure"  # funds held there were at risk
    VICTIM = "victim"  # it lost funds


class IncidentMatch(FrozenModel):
    kind: Literal["incident"] = "incident"
    incident_id: str = Field(description="The incident; get_exploit gives it in full.")
    protocol: str
    date: dt.date = Field(description="The incident's date.")
    role: AddressRole
    stance: Stance = Field(
        description="hostile: the address acted against a protocol; exposure: a contract "
        "that was exploited or vulnerable; victim: it lost funds."
    )
    meaning: str = Field(description="What the role means, in one sentence.")
    chain: str | None = Field(
        description="The chain the listing names, where the address was seen (null: not "
        "recorded). An EVM address is the same account on every EVM chain."
    )
    label: str | None = Field(description="The source's label for the address, if any.")


ListOrigin = Literal["bundle", "live", "import"]


class SanctionMatch(FrozenModel):
    kind: Literal["sanction"] = "sanction"
    list_name: str = Field(description="The list, e.g. ofac_sdn.")
    list_title: str
    list_date: dt.date = Field(description="The date of the copy KAMIYO holds.")
    origin: ListOrigin = Field(
        description="bundle: the snapshot shipped with KAMIYO; live: fetched from the list's "
        "publisher; import: read from a file an operator gave."
    )
    assets: list[str] = Field(description="The asset codes the list gives it under (ETH...).")
    meaning: str
    caveat: str = Field(description="What the list does not tell, such as its age.")


DirectMatch = Annotated[IncidentMatch | SanctionMatch, Field(discriminator="kind")]


class Counterparty(FrozenModel):
    """A counterparty in the address's history that an incident lists."""

    address: str
    chain: str
    incident_id: str
    protocol: str
    role: AddressRole = Field(description="The counterparty's role in that incident.")
    stance: Stance
    direction: Literal["in", "out"] = Field(
        description="in: funds came from the counterparty; out: funds went to it."
    )
    tx_hash: str
    date: dt.datetime | None = Field(description="When the transaction was (null: unknown).")
    amount: str | None = Field(
        description="In token units, as a decimal number in text (null: decimals unknown)."
    )
    token: str | None = Field(
        description="The token's symbol (its contract or mint where the symbol is unknown), "
        "or null for the native coin."
    )
    timing: Literal["before", "after", "unknown"] = Field(
        description="Whether the transaction came before or after the incident (on or after "
        "its day counts as after)."
    )
    hop: Literal[1, 2] = Field(
        default=1,
        description="1: the address dealt with it directly; 2: through `via` (enterprise "
        "screens read the histories of the top counterparties too).",
    )
    via: str | None = Field(
        default=None, description="On hop 2: the address's own counterparty in between."
    )


class OpenApproval(FrozenModel):
    """An ERC-20 allowance the address granted to a contract an incident lists, still open."""

    chain: str
    token: str = Field(description="The token contract.")
    token_symbol: str | None
    spender: str = Field(description="The exploited or vulnerable contract allowed to spend.")
    incident_id: str
    protocol: str
    value: str = Field(description="The allowance left, in token units (text), or unlimited.")
    advice: Literal["revoke"] = "revoke"


class CoverageFailure(FrozenModel):
    chain: str
    provider: str
    error: str


class ListChecked(FrozenModel):
    list_name: str
    list_title: str
    list_date: dt.date
    origin: ListOrigin
    entries: int = Field(description="Addresses on the list as held.")


class Coverage(FrozenModel):
    history_read: bool = Field(
        description="Whether the address's transaction history was read; when false, only "
        "the address itself was checked, and the answer is never allow."
    )
    chains: list[str] = Field(description="Chains whose history was read.")
    providers: list[str] = Field(description="Explorers or RPC endpoints that answered.")
    transactions_scanned: int
    truncated: bool = Field(
        description="The history was cut short (time budget, page cap): a partial scan."
    )
    time_budget_s: float | None
    failures: list[CoverageFailure]
    sanctions_lists: list[ListChecked] = Field(
        description="The sanctions lists checked, with their dates."
    )
    counterparties_found: int = Field(
        default=0,
        description="Listed counterparties found in the history; the answer lists at most 50 "
        "of them, the worst first.",
    )
    approvals_found: int = Field(
        default=0, description="Open approvals found; the answer lists at most 50."
    )


class AddressScreen(FrozenModel):
    address: str = Field(description="The address screened, in its stored form.")
    chain: str | None = Field(description="The chain asked, if any.")
    verdict: Verdict = Field(
        description="block: sanctioned or itself hostile; warn: exposure found; allow: history "
        "read in full and nothing found; unknown: not enough read to say."
    )
    score: int = Field(ge=0, le=100, description="0-100: the weight of the worst finding.")
    level: Level | None = Field(
        description="The score's band; null when nothing was found and the history was not "
        "read (no basis for any level)."
    )
    methodology_version: str
    direct_matches: list[DirectMatch] = Field(
        description="Listings of the address itself: sanctions first, then incidents."
    )
    counterparties: list[Counterparty]
    approvals: list[OpenApproval]
    coverage: Coverage
    summary: str = Field(description="One line: the verdict, why, and what to do.")
    next_cursor: int | None = Field(
        default=None,
        description="More listed counterparties than this answer holds: call again with "
        "cursor set to this for the next ones (null: none left).",
    )

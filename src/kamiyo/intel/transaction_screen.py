"""``screen_transaction``: is this an attack transaction, and whom did it pay or take from?

Two checks. The incident data: the incidents whose attack transactions include the hash. The
chain, through the explorers: the transaction's sender and recipient and every party of the
value it moved (its native value, internal and token transfers), each looked up among the
incident addresses and the sanctions lists. The verdict and score come from the wallet screen's
one table of weights (:mod:`kamiyo.intel.screening`), read for a transaction: an attack
transaction or a sanctioned or hostile party blocks, an exploited contract taking part warns.
"""

import datetime as dt
from typing import Literal, Protocol

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.chains import get_chain
from kamiyo.explorers import TransactionView, deadline_in
from kamiyo.intel import exposure
from kamiyo.intel.models import Chain, FrozenModel, TransactionQuery
from kamiyo.intel.scope import Scope
from kamiyo.intel.screening import (
    METHODOLOGY_VERSION,
    OPEN,
    Finding,
    lists_checked,
    sanction_matches,
    weigh,
)
from kamiyo.intel.screening_models import (
    CoverageFailure,
    Level,
    ListChecked,
    SanctionMatch,
    Stance,
    Verdict,
)
from kamiyo.intel.search import find_by_transaction
from kamiyo.intel.vocabulary import AddressRole

Side = Literal["sender", "recipient", "paid", "paid_by"]


class TransactionScreenQuery(TransactionQuery):
    chain: Chain = Field(
        default=None,
        max_length=40,
        description="The chain it was sent on (ethereum, bsc, base, solana...). Leave it out "
        "to try the chains with an explorer, Ethereum first.",
    )


class AttackOf(FrozenModel):
    incident_id: str = Field(description="The incident; get_exploit gives it in full.")
    protocol: str
    date: dt.date


class Party(FrozenModel):
    """An address the transaction involved that the data lists."""

    address: str
    side: Side = Field(
        description="sender/recipient of the transaction; paid: it received value in it; "
        "paid_by: it sent value in it."
    )
    incident_id: str | None = Field(description="The incident listing it (null: a sanction).")
    protocol: str | None
    role: AddressRole | None
    stance: Stance | None
    sanction: SanctionMatch | None = None


class TransactionCoverage(FrozenModel):
    transaction_read: bool = Field(
        description="Whether the transaction was read from the chain; when false only the "
        "incident data was checked, and the answer is never allow."
    )
    chain: str | None
    provider: str | None
    status: str | None = Field(description="success, failed, pending, not_found or unknown.")
    transfers: int = Field(description="Value movements seen in it.")
    failures: list[CoverageFailure]
    sanctions_lists: list[ListChecked]


class TransactionScreen(FrozenModel):
    tx_hash: str
    chain: str | None
    verdict: Verdict
    score: int = Field(ge=0, le=100)
    level: Level | None
    methodology_version: str
    attack_of: list[AttackOf] = Field(description="Incidents it is an attack transaction of.")
    parties: list[Party] = Field(description="Listed addresses it involved, worst first.")
    coverage: TransactionCoverage
    summary: str = Field(description="One line: the verdict, why, and what to do.")


class TransactionReader(Protocol):
    @property
    def chains(self) -> tuple[str, ...]: ...

    async def transaction(
        self, tx_hash: str, chain: str, *, deadline: float
    ) -> TransactionView: ...


def _chain_for(tx_hash: str, chain: str | None, reader: TransactionReader | None) -> str | None:
    """The chain to read: the one asked, if an explorer serves it; else, for an EVM hash,
    Ethereum or the first EVM chain configured (a hash does not say its chain), for a
    signature Solana."""
    configured = reader.chains if reader is not None else ()
    if chain is not None:
        slug = get_chain(chain).slug
        return slug if slug in configured else None
    solana = not tx_hash.startswith("0x")
    candidates = [c for c in configured if (c == "solana") == solana]
    return "ethereum" if "ethereum" in candidates else next(iter(candidates), None)


def _sides(view: TransactionView) -> dict[str, set[Side]]:
    sides: dict[str, set[Side]] = {}

    def add(address: str | None, side: Side) -> None:
        if address:
            sides.setdefault(address, set()).add(side)

    add(view.sender, "sender")
    add(view.recipient, "recipient")
    for transfer in view.transfers:
        add(transfer.sender, "paid_by")
        add(transfer.recipient, "paid")
    return sides


SIDE_ORDER: tuple[Side, ...] = ("sender", "recipient", "paid_by", "paid")


def _side(found: set[Side]) -> Side:
    """The side that says most: being the sender or recipient, then moving value."""
    return next(side for side in SIDE_ORDER if side in found)


async def _parties(session: AsyncSession, view: TransactionView, scope: Scope) -> list[Party]:
    sides = _sides(view)
    listed = await exposure.listings(session, sides, scope)
    parties = [
        Party(
            address=address,
            side=_side(sides[address]),
            incident_id=listing.incident_id,
            protocol=listing.protocol,
            role=listing.role,
            stance=listing.stance,
        )
        for address, listings in listed.items()
        for listing in listings
        if listing.stance is not Stance.VICTIM
    ]
    for address in sorted(sides):
        for sanction in await sanction_matches(session, address):
            parties.append(
                Party(
                    address=address,
                    side=_side(sides[address]),
                    incident_id=None,
                    protocol=None,
                    role=None,
                    stance=None,
                    sanction=sanction,
                )
            )
    order = [None, Stance.HOSTILE, Stance.EXPOSURE]  # sanctions, then hostile, then exposure
    return sorted(parties, key=lambda p: order.index(p.stance))


def _findings(attack_of: list[AttackOf], parties: list[Party]) -> list[Finding]:
    found = [Finding.HOSTILE for _ in attack_of]
    for party in parties:
        if party.sanction is not None:
            found.append(Finding.SANCTIONED)
        elif party.stance is Stance.HOSTILE:
            found.append(Finding.HOSTILE)
        elif party.stance is Stance.EXPOSURE:
            found.append(Finding.COUNTERPARTY_EXPOSED)
    return found


def _summary(
    tx_hash: str, verdict: Verdict, attack_of: list[AttackOf], parties: list[Party], read: bool
) -> str:
    if attack_of:
        first = attack_of[0]
        return (
            f"BLOCK: {tx_hash} is an attack transaction of {first.protocol} "
            f"({first.date.isoformat()}, incident {first.incident_id}); get_exploit gives the "
            "incident."
        )
    if parties:
        worst = parties[0]
        what = (
            f"on the {worst.sanction.list_title}"
            if worst.sanction
            else f"the {worst.role.value.replace('_', ' ') if worst.role else 'listed address'} "
            f"of {worst.protocol} (incident {worst.incident_id})"
        )
        advice = (
            "do not deal with its parties"
            if verdict is Verdict.BLOCK
            else "funds may have been at risk; read the parties"
        )
        return f"{verdict.value.upper()}: {worst.address} ({worst.side}) is {what}; {advice}."
    if not read:
        return (
            f"UNKNOWN: {tx_hash} is in no incident KAMIYO knows, and the transaction could not "
            "be read from the chain, so its parties are unchecked; try again with its chain."
        )
    return (
        f"ALLOW: {tx_hash} is in no incident KAMIYO knows and none of its parties is listed "
        "or sanctioned."
    )


async def screen_transaction(
    session: AsyncSession,
    query: TransactionScreenQuery,
    scope: Scope = OPEN,
    reader: TransactionReader | None = None,
    *,
    budget_s: float = 20.0,
) -> TransactionScreen:
    """Both checks of ``query.tx_hash``, the chain read within ``budget_s`` seconds."""
    matches = await find_by_transaction(session, query, scope)
    attack_of = [
        AttackOf(incident_id=i.id, protocol=i.protocol, date=i.date) for i in matches.incidents
    ]
    chain = _chain_for(query.tx_hash, query.chain, reader)
    failures: list[CoverageFailure] = []
    view: TransactionView | None = None
    if reader is None or chain is None:
        asked = get_chain(query.chain).slug if query.chain else "its chain"
        failures.append(
            CoverageFailure(
                chain=asked, provider="none", error=f"no explorer is configured for {asked}"
            )
        )
    else:
        view = await reader.transaction(query.tx_hash, chain, deadline=deadline_in(budget_s))
        failures += [
            CoverageFailure(chain=chain, provider=view.provider, error=line)
            for line in view.failures
        ]
    read = view is not None and view.status not in ("not_found", "unknown")
    parties = await _parties(session, view, scope) if view is not None and read else []
    verdict, score, level = weigh(_findings(attack_of, parties), read=read)
    return TransactionScreen(
        tx_hash=query.tx_hash,
        chain=chain,
        verdict=verdict,
        score=score,
        level=level,
        methodology_version=METHODOLOGY_VERSION,
        attack_of=attack_of,
        parties=parties,
        coverage=TransactionCoverage(
            transaction_read=read,
            chain=chain,
            provider=view.provider if view else None,
            status=view.status if view else None,
            transfers=len(view.transfers) if view else 0,
            failures=failures,
            sanctions_lists=await lists_checked(session),
        ),
        summary=_summary(query.tx_hash, verdict, attack_of, parties, read),
    )

"""Screening an address: what the data says about it, a verdict, a score, and what to do.

Direct matches come first: every incident that lists the address itself, in which role, and
every sanctions list that names it. An EVM address is one account on every EVM chain, so a
listing on any chain counts whatever chain is asked (the listing says where it was seen); the
address's own format says which family it is, and the query refuses a chain of another family.
Counterparties and open approvals come from reading the address's history; until that is read,
an answer is ``block`` (sanctioned or hostile) or ``unknown``, never ``allow``: silence in the
incident data is not safety.

The score is the weight of the worst finding, from one table (:data:`WEIGHTS`); the verdict
follows from what the findings are and how much history was read (:func:`judge`).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.db.tables import IncidentAddress
from kamiyo.intel import sanctions
from kamiyo.intel.scope import Scope
from kamiyo.intel.screening_models import (
    AddressScreen,
    AddressScreenQuery,
    Counterparty,
    Coverage,
    DirectMatch,
    IncidentMatch,
    Level,
    ListChecked,
    OpenApproval,
    SanctionMatch,
    Stance,
    Verdict,
)
from kamiyo.intel.vocabulary import AddressRole

METHODOLOGY_VERSION = "wallet-screen-1"
OPEN = Scope()

# What each role in an incident means for someone about to deal with the address.
ROLES: dict[AddressRole, tuple[Stance, str]] = {
    AddressRole.ATTACKER: (
        Stance.HOSTILE,
        "It carried out the attack or received its proceeds.",
    ),
    AddressRole.ATTACK_CONTRACT: (
        Stance.HOSTILE,
        "A contract deployed to carry out the attack.",
    ),
    AddressRole.FRONTRUNNER: (
        Stance.HOSTILE,
        "It copied or front-ran the attack to take the funds itself (some such bots later "
        "returned them).",
    ),
    AddressRole.VULNERABLE_CONTRACT: (
        Stance.EXPOSURE,
        "The contract that was exploited or found vulnerable: funds held there were at risk.",
    ),
    AddressRole.VICTIM: (Stance.VICTIM, "It lost funds in the incident."),
}
SANCTION_MEANING = (
    "Named on this sanctions list: dealing with it can be unlawful for anyone bound by it."
)
SANCTION_CAVEAT = (
    "The list is as of its date and designations change (Tornado Cash, on the 2024 list, was "
    "delisted on 2025-03-21): check the current list before acting on a match or its absence."
)


class Finding(StrEnum):
    SANCTIONED = "sanctioned"
    HOSTILE = "hostile"
    COUNTERPARTY_HOSTILE = "counterparty_hostile"
    SECOND_HOP_HOSTILE = "second_hop_hostile"
    OPEN_APPROVAL = "open_approval"
    EXPOSED = "exposed"
    COUNTERPARTY_EXPOSED = "counterparty_exposed"
    VICTIM = "victim"


@dataclass(frozen=True)
class Weight:
    points: int  # the score this finding gives on its own (the score is the worst one's)
    verdict: Verdict | None  # what it makes the verdict (None: no change)
    reason: str


# THE table of weights. The worst finding sets the score: one sanction is not made worse by
# a second, and a list of small findings does not add up to a hostile address.
WEIGHTS: dict[Finding, Weight] = {
    Finding.SANCTIONED: Weight(
        100, Verdict.BLOCK, "On a sanctions list: dealing with it can be unlawful."
    ),
    Finding.HOSTILE: Weight(
        90, Verdict.BLOCK, "The address itself acted against a protocol: funds go to an attacker."
    ),
    Finding.COUNTERPARTY_HOSTILE: Weight(
        70, Verdict.WARN, "It exchanged funds with an attacker: it may hold stolen funds."
    ),
    Finding.SECOND_HOP_HOSTILE: Weight(
        45,
        Verdict.WARN,
        "A counterparty of it exchanged funds with an attacker: stolen funds may have passed "
        "through one address on their way to it.",
    ),
    Finding.OPEN_APPROVAL: Weight(
        60, Verdict.WARN, "An exploited contract may still spend its tokens until revoked."
    ),
    Finding.EXPOSED: Weight(
        40, Verdict.WARN, "A contract that was exploited or vulnerable: funds there were at risk."
    ),
    Finding.COUNTERPARTY_EXPOSED: Weight(
        30, Verdict.WARN, "It dealt with an exploited contract: its funds may have been at risk."
    ),
    Finding.VICTIM: Weight(10, None, "It lost funds in an incident: a victim, not a threat."),
}
# Score bands, worst first: the level is the first band the score reaches.
LEVELS: tuple[tuple[int, Level], ...] = ((85, "critical"), (60, "high"), (30, "medium"), (0, "low"))
_DIRECT = {Stance.HOSTILE: Finding.HOSTILE, Stance.EXPOSURE: Finding.EXPOSED}
_THROUGH = {
    Stance.HOSTILE: Finding.COUNTERPARTY_HOSTILE,
    Stance.EXPOSURE: Finding.COUNTERPARTY_EXPOSED,
}


def findings(
    direct: Iterable[DirectMatch],
    counterparties: Iterable[Counterparty] = (),
    approvals: Iterable[OpenApproval] = (),
) -> list[Finding]:
    """Each match as the finding it is (a victim counterparty is no finding)."""
    found = [
        Finding.SANCTIONED
        if isinstance(match, SanctionMatch)
        else _DIRECT.get(match.stance, Finding.VICTIM)
        for match in direct
    ]
    found += [
        _THROUGH[c.stance] if c.hop == 1 else Finding.SECOND_HOP_HOSTILE
        for c in counterparties
        if c.stance in _THROUGH and (c.hop == 1 or c.stance is Stance.HOSTILE)
    ]
    found += [Finding.OPEN_APPROVAL for _ in approvals]
    return found


def judge(found: Sequence[Finding], coverage: Coverage) -> tuple[Verdict, int, Level | None]:
    """The verdict, score and level of these findings, given how much history was read."""
    partial = coverage.truncated or bool(coverage.failures)
    return weigh(found, read=coverage.history_read, partial=partial)


def weigh(
    found: Sequence[Finding], *, read: bool, partial: bool = False
) -> tuple[Verdict, int, Level | None]:
    """The verdict, score and level of findings from a read that happened or not (``read``)
    and may have been cut short (``partial``)."""
    score = max((WEIGHTS[f].points for f in found), default=0)
    verdicts = {WEIGHTS[f].verdict for f in found}
    if Verdict.BLOCK in verdicts:
        verdict = Verdict.BLOCK
    elif not read:
        verdict = Verdict.UNKNOWN
    elif Verdict.WARN in verdicts:
        verdict = Verdict.WARN
    elif partial:
        verdict = Verdict.UNKNOWN  # a partial scan is never clean
    else:
        verdict = Verdict.ALLOW
    level = None if not found and verdict is Verdict.UNKNOWN else _level(score)
    return verdict, score, level


def _level(score: int) -> Level:
    return next(level for floor, level in LEVELS if score >= floor)


def _role(match: IncidentMatch) -> str:
    where = f" (seen on {match.chain})" if match.chain else ""
    return (
        f"{match.role.value.replace('_', ' ')} of {match.protocol} on {match.date.isoformat()}"
        f"{where}"
    )


def _found(address: str, direct: list[DirectMatch]) -> str | None:
    """What the direct matches say, as one clause (None when there are none)."""
    clauses = [
        f"on the {m.list_title} as of {m.list_date.isoformat()}"
        for m in direct
        if isinstance(m, SanctionMatch)
    ]
    incidents = [m for m in direct if isinstance(m, IncidentMatch)]
    if incidents:  # sorted hostile first: the first says the most
        more = len({m.incident_id for m in incidents}) - 1
        clauses.append(
            f"listed as {_role(incidents[0])}" + (f" and in {more} more" if more else "")
        )
    return f"{address} is " + " and ".join(clauses) if clauses else None


def _summary(address: str, verdict: Verdict, direct: list[DirectMatch], c: Coverage) -> str:
    found = _found(address, direct)
    if verdict is Verdict.BLOCK:
        sanctioned = any(isinstance(m, SanctionMatch) for m in direct)
        caveat = " (the list may be out of date)" if sanctioned else ""
        return f"BLOCK: {found}{caveat}; do not send it funds or approve it to spend yours."
    if not c.history_read:
        unread = (
            "its transaction history was not read (no explorer answered or none is "
            "configured), so its counterparties and approvals are unchecked"
        )
        if found:
            return f"UNKNOWN: {found}, but {unread}: read the matches before dealing with it."
        lists = ", ".join(f"{x.list_title} of {x.list_date.isoformat()}" for x in c.sanctions_lists)
        return (
            f"UNKNOWN: {address} is in no incident KAMIYO knows and on no sanctions list it holds "
            f"({lists or 'none loaded'}), but {unread}: not a clean bill; screen it again once "
            "its history can be read."
        )
    if verdict is Verdict.WARN:
        return (
            f"WARN: {found or f'the history of {address} shows exposure'}; read the "
            "counterparties and revoke any approval listed before dealing with it."
        )
    if verdict is Verdict.UNKNOWN:
        return (
            f"UNKNOWN: the history scan of {address} was partial ({c.transactions_scanned} "
            "transactions) and found nothing to warn of so far: not a clean bill; screen again."
        )
    return (
        f"ALLOW: {address} is in no incident and on no sanctions list KAMIYO holds, and "
        f"{c.transactions_scanned} transactions on {', '.join(c.chains)} show no exposure."
    )


def assemble(
    query: AddressScreenQuery,
    direct: list[DirectMatch],
    coverage: Coverage,
    counterparties: Sequence[Counterparty] = (),
    approvals: Sequence[OpenApproval] = (),
) -> AddressScreen:
    """The answer from what was found and how much was read."""
    verdict, score, level = judge(findings(direct, counterparties, approvals), coverage)
    return AddressScreen(
        address=query.wallet_address,
        chain=query.chain,
        verdict=verdict,
        score=score,
        level=level,
        methodology_version=METHODOLOGY_VERSION,
        direct_matches=direct,
        counterparties=list(counterparties),
        approvals=list(approvals),
        coverage=coverage,
        summary=_summary(query.wallet_address, verdict, direct, coverage),
    )


async def incident_matches(
    session: AsyncSession, address: str, scope: Scope = OPEN
) -> list[IncidentMatch]:
    """Every incident that lists ``address`` (stored form), on any chain: hostile roles first,
    then exposure, then victim; the latest first within each."""
    stmt = (
        select(
            IncidentRow.id,
            IncidentRow.protocol,
            IncidentRow.date,
            IncidentAddress.role,
            IncidentAddress.chain,
            IncidentAddress.label,
        )
        .join(IncidentAddress, IncidentAddress.incident_pk == IncidentRow.pk)
        .where(IncidentAddress.address == address)
        .order_by(IncidentRow.date.desc(), IncidentRow.pk.desc(), IncidentAddress.pk)
    )
    if scope.hide_after:
        stmt = stmt.where(IncidentRow.date <= scope.hide_after)
    matches = []
    for row in await session.execute(stmt):
        role = AddressRole(row.role)
        stance, meaning = ROLES[role]
        matches.append(
            IncidentMatch(
                incident_id=row.id,
                protocol=row.protocol,
                date=row.date,
                role=role,
                stance=stance,
                meaning=meaning,
                chain=row.chain,
                label=row.label,
            )
        )
    order = list(Stance)
    return sorted(matches, key=lambda m: order.index(m.stance))  # stable: dates stay sorted


async def sanction_matches(session: AsyncSession, address: str) -> list[SanctionMatch]:
    return [
        SanctionMatch(
            list_name=row.list_name,
            list_title=sanctions.list_title(row.list_name),
            list_date=row.list_date,
            origin=row.origin,
            assets=list(row.assets),
            meaning=SANCTION_MEANING,
            caveat=SANCTION_CAVEAT,
        )
        for row in await sanctions.listings(session, address)
    ]


async def lists_checked(session: AsyncSession) -> list[ListChecked]:
    return [
        ListChecked(
            list_name=held.name,
            list_title=held.title,
            list_date=held.date,
            origin=held.origin,
            entries=held.entries,
        )
        for held in await sanctions.held_lists(session)
    ]


async def screen_address(
    session: AsyncSession, query: AddressScreenQuery, scope: Scope = OPEN
) -> AddressScreen:
    """The direct checks of ``query.wallet_address``; its history is not read here."""
    address = query.wallet_address
    direct: list[DirectMatch] = [
        *await sanction_matches(session, address),
        *await incident_matches(session, address, scope),
    ]
    coverage = Coverage(
        history_read=False,
        chains=[],
        providers=[],
        transactions_scanned=0,
        truncated=False,
        time_budget_s=None,
        failures=[],
        sanctions_lists=await lists_checked(session),
    )
    return assemble(query, direct, coverage)

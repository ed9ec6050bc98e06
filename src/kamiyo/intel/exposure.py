"""Who an address dealt with: the counterparties and open approvals that incident data lists.

The explorers read the history (:class:`kamiyo.explorers.History`: transfers and approvals per
chain); this looks every address the wallet received from, sent to or approved up among the
incident addresses (a few queries, in chunks), and says of each listed one which incident, in
which role, through which transaction, and whether that came before or after the incident.

An EVM address is one account on every EVM chain, so a listing counts whichever chain the
transfer was on, as for the address itself. Victims are no finding: receiving from a protocol
that was later robbed says nothing about the wallet. A transfer whose provider gave no time is
still reported, with "unknown" timing: an attacker counterparty matters whenever it was.
"""

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import Incident as IncidentRow
from kamiyo.db.tables import IncidentAddress
from kamiyo.explorers import Approval, History, Transfer
from kamiyo.intel.scope import Scope
from kamiyo.intel.screening import ROLES
from kamiyo.intel.screening_models import Counterparty, OpenApproval, Stance
from kamiyo.intel.vocabulary import AddressRole

CHUNK = 500  # addresses per look-up query (well under every engine's parameter limit)
# What an answer lists at most, worst first; the coverage says how many more there were.
MAX_COUNTERPARTIES = 50
MAX_APPROVALS = 50
# Approvals only matter to a contract that can still move the tokens: an exploited contract,
# or one deployed by the attacker (drainers take approvals before they take funds).
APPROVAL_STANCES = frozenset({Stance.EXPOSURE, Stance.HOSTILE})


@dataclass(frozen=True, slots=True)
class Listing:
    """An incident that lists an address, in a role."""

    incident_id: str
    protocol: str
    date: dt.date
    role: AddressRole

    @property
    def stance(self) -> Stance:
        return ROLES[self.role][0]


def addresses_of(histories: Iterable[History]) -> set[str]:
    """Every address the histories' transfers and approvals name besides their own."""
    found: set[str] = set()
    for history in histories:
        for transfer in history.transfers:
            found.update(a for a in (transfer.sender, transfer.recipient) if a)
        found.update(approval.spender for approval in history.approvals)
        found.discard(history.address)
    return found


async def listings(
    session: AsyncSession, addresses: Iterable[str], scope: Scope
) -> dict[str, list[Listing]]:
    """The incidents that list each of ``addresses`` (those listed only), by address."""
    wanted = sorted(addresses)
    found: dict[str, list[Listing]] = {}
    for start in range(0, len(wanted), CHUNK):
        stmt = (
            select(
                IncidentAddress.address,
                IncidentAddress.role,
                IncidentRow.id,
                IncidentRow.protocol,
                IncidentRow.date,
            )
            .join(IncidentRow, IncidentRow.pk == IncidentAddress.incident_pk)
            .where(IncidentAddress.address.in_(wanted[start : start + CHUNK]))
            .order_by(IncidentAddress.address, IncidentRow.date, IncidentRow.pk)
        )
        if scope.hide_after:
            stmt = stmt.where(IncidentRow.date <= scope.hide_after)
        for row in await session.execute(stmt):
            listing = Listing(row.id, row.protocol, row.date, AddressRole(row.role))
            if listing not in found.setdefault(row.address, []):
                found[row.address].append(listing)
    return found


def _amount(transfer: Transfer) -> str | None:
    if transfer.decimals is None:
        return None
    return _units(transfer.raw_amount, transfer.decimals)


def _units(raw: int, decimals: int) -> str:
    return format(Decimal(raw).scaleb(-decimals).normalize(), "f")


def _timing(when: dt.datetime | None, incident: dt.date) -> str:
    if when is None:
        return "unknown"
    return "before" if when.date() < incident else "after"


def top_partners(histories: Iterable[History], width: int, skip: set[str]) -> list[tuple[str, str]]:
    """The ``width`` addresses (with their chain) the histories moved the most native coin
    with, then the most transfers: whose own histories a second hop reads. Tokens are not
    compared (their prices are not known here)."""
    weight: dict[tuple[str, str], tuple[int, int]] = {}
    for history in histories:
        for transfer in history.transfers:
            other = transfer.recipient if transfer.sender == history.address else transfer.sender
            if not other or other == history.address or other in skip:
                continue
            native = transfer.raw_amount if transfer.token is None else 0
            value, count = weight.get((other, transfer.chain), (0, 0))
            weight[(other, transfer.chain)] = (value + native, count + 1)
    ranked = sorted(weight, key=lambda key: (weight[key], key), reverse=True)
    return ranked[:width]


def counterparties(
    histories: Iterable[History], listed: Mapping[str, Sequence[Listing]], *, hop: int = 1
) -> list[Counterparty]:
    """One entry per transfer with a listed counterparty and per incident listing it (victims
    left out): hostile first, then exposure; the newest first within each. On ``hop`` 2 the
    histories are the wallet's counterparties' own, and each entry names that one as
    ``via``."""
    found: dict[tuple[str, str, str, str], Counterparty] = {}
    for history in histories:
        for transfer in history.transfers:
            outgoing = transfer.sender == history.address
            other = transfer.recipient if outgoing else transfer.sender
            if other is None or other == history.address:
                continue
            for listing in listed.get(other, ()):
                if listing.stance is Stance.VICTIM:
                    continue
                direction = "out" if outgoing else "in"
                key = (other, listing.incident_id, transfer.tx_hash, direction)
                if key in found:  # one transaction moving several tokens: the first says it
                    continue
                found[key] = Counterparty(
                    address=other,
                    chain=transfer.chain,
                    incident_id=listing.incident_id,
                    protocol=listing.protocol,
                    role=listing.role,
                    stance=listing.stance,
                    direction=direction,
                    tx_hash=transfer.tx_hash,
                    date=transfer.time,
                    amount=_amount(transfer),
                    # Its symbol, else its contract or mint: null stays the native coin's.
                    token=(transfer.symbol or transfer.token) if transfer.token else None,
                    timing=_timing(transfer.time, listing.date),
                    hop=2 if hop == 2 else 1,
                    via=history.address if hop == 2 else None,
                )
    order = list(Stance)
    newest_first = sorted(
        found.values(),
        key=lambda c: c.date or dt.datetime.min.replace(tzinfo=dt.UTC),
        reverse=True,
    )
    return sorted(newest_first, key=lambda c: order.index(c.stance))


def _decimals(histories: Iterable[History]) -> dict[tuple[str, str], int]:
    """Each token's decimals, from the token transfers the histories saw (approval logs carry
    none)."""
    return {
        (t.chain, t.token): t.decimals
        for h in histories
        for t in h.transfers
        if t.token is not None and t.decimals is not None
    }


def _allowance(approval: Approval, decimals: int | None) -> str:
    if approval.unlimited:
        return "unlimited"
    if decimals is None:
        return f"{approval.raw_value} (in the token's smallest unit)"
    return _units(approval.raw_value, decimals)


def open_approvals(
    histories: Iterable[History], listed: Mapping[str, Sequence[Listing]]
) -> list[OpenApproval]:
    """Non-zero allowances the address granted to a contract an incident lists as exploited,
    vulnerable or the attacker's: each is advice to revoke it."""
    histories = list(histories)
    decimals = _decimals(histories)
    symbols = {
        (t.chain, t.token): t.symbol for h in histories for t in h.transfers if t.token and t.symbol
    }
    found: list[OpenApproval] = []
    for history in histories:
        for approval in history.approvals:
            if approval.raw_value == 0 or approval.owner != history.address:
                continue
            for listing in listed.get(approval.spender, ()):
                if listing.stance not in APPROVAL_STANCES:
                    continue
                found.append(
                    OpenApproval(
                        chain=approval.chain,
                        token=approval.token,
                        token_symbol=symbols.get((approval.chain, approval.token)),
                        spender=approval.spender,
                        incident_id=listing.incident_id,
                        protocol=listing.protocol,
                        value=_allowance(approval, decimals.get((approval.chain, approval.token))),
                    )
                )
                break  # one incident is enough reason to revoke
    return found

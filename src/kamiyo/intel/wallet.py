"""``check_wallet_interactions``: the address itself, then its history on each chain.

The direct checks (sanctions lists, incidents listing the address) always run. Then the
address's history is read on the chain asked, or on every chain an explorer is configured for
that the address's family lives on (an EVM address on each EVM chain), side by side under one
time budget, and its counterparties and open approvals are looked up (:mod:`exposure`). A
read that did not answer at all counts as not read; a read cut short counts as partial; the
verdict follows from both (:func:`kamiyo.intel.screening.judge`).
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.chains import AddressFamily, address_family, get_chain
from kamiyo.explorers import History, deadline_in
from kamiyo.intel import exposure
from kamiyo.intel.scope import Scope
from kamiyo.intel.screening import (
    OPEN,
    assemble,
    incident_matches,
    lists_checked,
    sanction_matches,
)
from kamiyo.intel.screening_models import (
    AddressScreen,
    AddressScreenQuery,
    Counterparty,
    Coverage,
    CoverageFailure,
    DirectMatch,
    Stance,
)

# (done, total, message): how many chains' histories are read, of how many.
Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class HistoryReader(Protocol):
    """What the screen needs of :class:`kamiyo.explorers.Explorers`."""

    @property
    def chains(self) -> tuple[str, ...]: ...

    async def history(
        self, address: str, chain: str, *, deadline: float, max_pages: int | None = None
    ) -> History: ...


def _answered(history: History) -> bool:
    """Whether the provider told anything: a complete empty history is an answer, a read
    whose every request failed is not."""
    return history.complete or bool(history.transfers or history.approvals)


def chains_to_read(
    address: str, chain: str | None, reader: HistoryReader | None
) -> tuple[list[str], list[CoverageFailure]]:
    """The chains whose history is read, and why an asked chain is not."""
    configured = reader.chains if reader is not None else ()
    if chain is not None:
        slug = get_chain(chain).slug
        if slug in configured:
            return [slug], []
        why = (
            f"no explorer is configured for {slug} (configured: {', '.join(configured)})"
            if configured
            else "no explorer is configured"
        )
        return [], [CoverageFailure(chain=slug, provider="none", error=why)]
    family = address_family(address)
    wanted = [
        slug
        for slug in configured
        if get_chain(slug).family is family
        and (family is AddressFamily.EVM or family is AddressFamily.SOLANA)
    ]
    return wanted, []


# How many of the top counterparties an enterprise screen follows to their own histories.
SECOND_HOP_WIDTH = 5
# The work one screen may ask of a provider, per list (normal, internal, token transfers,
# approvals), in pages of 1,000: an enterprise screen (a detailed scope) reads up to the
# configured cap (10: all Etherscan serves), others the newest 3,000 records, and a second hop
# the newest 1,000 of each counterparty.
PAGES = {True: None, False: 3}
SECOND_HOP_PAGES = 1


async def _second_hop(
    session: AsyncSession,
    scope: Scope,
    reader: HistoryReader,
    read: Sequence[History],
    listed: dict[str, list[exposure.Listing]],
    deadline: float,
) -> list[Counterparty]:
    """Hostile counterparties of the wallet's top counterparties (those not listed
    themselves), read within what is left of the budget."""
    skip = {h.address for h in read} | set(listed)
    partners = exposure.top_partners(read, SECOND_HOP_WIDTH, skip)
    histories = await asyncio.gather(
        *(
            reader.history(address, chain, deadline=deadline, max_pages=SECOND_HOP_PAGES)
            for address, chain in partners
        )
    )
    answered = [h for h in histories if _answered(h)]
    beyond = exposure.addresses_of(answered) - skip
    far = await exposure.listings(session, beyond, scope)
    return [c for c in exposure.counterparties(answered, far, hop=2) if c.stance is Stance.HOSTILE]


async def screen_wallet(
    session: AsyncSession,
    query: AddressScreenQuery,
    scope: Scope = OPEN,
    reader: HistoryReader | None = None,
    *,
    budget_s: float = 20.0,
    progress: Progress | None = None,
) -> AddressScreen:
    """The whole screen of ``query.wallet_address`` within ``budget_s`` seconds of reading;
    ``progress`` hears of each chain read."""
    address = query.wallet_address
    direct: list[DirectMatch] = [
        *await sanction_matches(session, address),
        *await incident_matches(session, address, scope),
    ]
    chains, failures = chains_to_read(address, query.chain, reader)
    histories: Sequence[History] = ()
    deadline = deadline_in(budget_s)
    if reader is not None and chains:
        done = 0

        async def read_one(chain: str) -> History:
            nonlocal done
            history = await reader.history(
                address, chain, deadline=deadline, max_pages=PAGES[scope.detailed]
            )
            done += 1
            if progress is not None:
                await progress(
                    done,
                    len(chains),
                    f"read {chain}: {history.transactions_scanned} transactions"
                    + (" (partial)" if history.truncated else ""),
                )
            return history

        if progress is not None:
            await progress(0, len(chains), f"reading the history on {', '.join(chains)}")
        histories = await asyncio.gather(*(read_one(chain) for chain in chains))
    read = [h for h in histories if _answered(h)]
    failures += [
        CoverageFailure(chain=h.chain, provider=h.provider, error=line)
        for h in histories
        for line in h.failures
    ]
    listed = await exposure.listings(session, exposure.addresses_of(read), scope)
    counterparties = exposure.counterparties(read, listed)
    if scope.detailed and read and reader is not None:
        second = await _second_hop(session, scope, reader, read, listed, deadline)
        counterparties += second
    approvals = exposure.open_approvals(read, listed)
    start = query.cursor or 0
    end = start + exposure.MAX_COUNTERPARTIES
    shown_counterparties = counterparties[start:end]
    shown_approvals = approvals[: exposure.MAX_APPROVALS]
    coverage = Coverage(
        history_read=bool(read),
        chains=[h.chain for h in read],
        providers=sorted({h.provider for h in read}),
        transactions_scanned=sum(h.transactions_scanned for h in read),
        truncated=any(h.truncated for h in histories) or len(read) < len(histories),
        time_budget_s=budget_s if histories else None,
        failures=failures,
        sanctions_lists=await lists_checked(session),
        counterparties_found=len(counterparties),
        approvals_found=len(approvals),
    )
    answer = assemble(query, direct, coverage, shown_counterparties, shown_approvals)
    if end >= len(counterparties):
        return answer
    more = (
        f" Counterparties {start + 1}-{end} of {len(counterparties)} are listed: call again "
        f"with cursor={end} for the next ones."
    )
    return answer.model_copy(update={"next_cursor": end, "summary": answer.summary + more})

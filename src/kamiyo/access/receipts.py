"""Receipts: the calls paid per call (x402), each with its payer, network, amount and transaction.

A paid call's usage record names its payment's row in the settlement journal (``payments``),
where the receipt's facts are kept once; they are read here through that link, for
``kamiyo usage show``, the dashboard's usage page and CSV, and the operators' page. A payment
answered again for a retry (the same payment id) is not a call of its own: the gate records no
usage for it, so it shows no second receipt and no second charge.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.access.meter import Receipt, UsageEvent
from kamiyo.chains import USDC, chain_by_caip2
from kamiyo.db.payments import Payment
from kamiyo.db.usage import UsageCheckpoint, UsageRecord
from kamiyo.payments.journal import SETTLED
from kamiyo.payments.outcomes import Hold
from kamiyo.payments.prices import usd

if TYPE_CHECKING:  # x402 loads only where x402 is on
    from x402.schemas import SettleResponse

RECENT = 20  # receipts the pages list


def settled_receipt(hold: Hold, settled: "SettleResponse") -> Receipt:
    """The receipt of a payment the cashier just settled: the facts it wrote to the journal
    (the payer is the settlement's, else the verification's, as ``Cashier.settle`` records it)."""
    payer = settled.payer or hold.payer
    return Receipt(hold.held.pk, hold.network, payer, hold.quote.amount, settled.transaction)


@dataclass(frozen=True, slots=True)
class PaidCall:
    """One call paid per call, and its receipt."""

    at: dt.datetime
    tool: str
    account_pk: int | None
    key_pk: int | None
    receipt: Receipt

    @property
    def amount_usd(self) -> str:
        return usd(self.receipt.amount)

    @property
    def network_name(self) -> str:
        """The network as payers see it named (as ``AcceptedNetwork.label``), else its id."""
        network = self.receipt.network
        if (known := USDC.get(network)) is not None:
            return known.label
        chain = chain_by_caip2(network)
        return chain.name if chain is not None else network

    def as_json(self) -> dict[str, object]:
        paid = self.receipt
        return {
            "at": self.at.astimezone(dt.UTC).isoformat(),
            "tool": self.tool,
            "key_pk": self.key_pk,
            "payment_pk": paid.payment_pk,
            "network": paid.network,
            "network_name": self.network_name,
            "payer": paid.payer,
            "amount": paid.amount,
            "amount_usd": self.amount_usd,
            "transaction": paid.transaction,
        }


def _paid_calls() -> Select[UsageRecord, Payment]:
    return (
        select(UsageRecord, Payment)
        .join(Payment, Payment.pk == UsageRecord.payment_pk)
        .order_by(UsageRecord.at.desc(), UsageRecord.pk.desc())
    )


def _paid_call(record: UsageRecord, payment: Payment) -> PaidCall:
    receipt = Receipt(
        payment.pk, payment.network, payment.payer, payment.amount, payment.transaction or ""
    )
    return PaidCall(record.at, record.tool, record.account_pk, record.key_pk, receipt)


async def account_receipts(
    session: AsyncSession,
    account_pk: int,
    since: dt.datetime,
    unwritten: Sequence[UsageEvent] = (),
    limit: int | None = None,
) -> list[PaidCall]:
    """The account's paid calls since ``since``, newest first, those the meter holds unwritten
    included (a call paid a second ago shows at once)."""
    query = _paid_calls().where(UsageRecord.account_pk == account_pk, UsageRecord.at >= since)
    rows = await session.execute(query if limit is None else query.limit(limit))
    found = [_paid_call(record, payment) for record, payment in rows]
    waiting = [
        PaidCall(event.at, event.tool, event.account_pk, event.key_pk, event.receipt)
        for event in unwritten
        if event.receipt is not None and event.account_pk == account_pk and event.at >= since
    ]
    paid = sorted([*waiting, *found], key=lambda call: call.at, reverse=True)
    return paid if limit is None else paid[:limit]


async def recent_receipts(session: AsyncSession, limit: int = RECENT) -> list[PaidCall]:
    """The newest paid calls of every caller, anonymous ones too (the operators' page)."""
    rows = await session.execute(_paid_calls().limit(limit))
    return [_paid_call(record, payment) for record, payment in rows]


@dataclass(frozen=True, slots=True)
class NetworkRevenue:
    network: str
    payments: int
    amount: int  # atomic USDC


async def revenue_by_network(session: AsyncSession) -> list[NetworkRevenue]:
    """What the receipts took, per network (all time)."""
    rows = await session.execute(
        select(Payment.network, func.count(), func.sum(Payment.amount))
        .select_from(UsageRecord)
        .join(Payment, Payment.pk == UsageRecord.payment_pk)
        .group_by(Payment.network)
        .order_by(Payment.network)
    )
    return [NetworkRevenue(network, count, int(amount or 0)) for network, count, amount in rows]


async def unrecorded_settlements(session: AsyncSession) -> int:
    """Settled payments no usage record names yet: the meter writes within its flush interval,
    so a lasting count means an instance died before writing the calls they paid for."""
    recorded = exists().where(UsageRecord.payment_pk == Payment.pk)
    # Before the latest retention cut-off a payment's record may have been pruned (retention.py).
    pruned_before = select(func.max(UsageCheckpoint.pruned_before)).scalar_subquery()
    found = await session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(
            Payment.state == SETTLED,
            ~recorded,
            or_(pruned_before.is_(None), Payment.created_at >= pruned_before),
        )
    )
    return found or 0

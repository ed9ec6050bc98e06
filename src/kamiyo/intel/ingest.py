"""Writing incident records into the store: the one path every source takes."""

import datetime as dt
from collections.abc import Iterable, Sequence
from itertools import islice

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import (
    Base,
    Incident,
    IncidentAddress,
    IncidentChain,
    IncidentReference,
    IncidentTransaction,
)
from kamiyo.intel import fulltext
from kamiyo.intel.models import IncidentRecord
from kamiyo.intel.vocabulary import classify_attack, firm_for_url

BATCH_SIZE = 2000


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


async def replace_incidents(
    session: AsyncSession,
    records: Iterable[IncidentRecord],
    *,
    now: dt.datetime | None = None,
) -> int:
    """Insert the records, replacing any stored incident with the same id. Returns the count.

    The caller owns the transaction: nothing is visible to others until it commits.
    """
    now = now or dt.datetime.now(dt.UTC)
    written = 0
    iterator = iter(records)
    while batch := tuple(islice(iterator, BATCH_SIZE)):
        await _delete_existing(session, [r.id for r in batch])
        await _insert_batch(session, batch, now)
        written += len(batch)
    return written


async def _delete_existing(session: AsyncSession, ids: Sequence[str]) -> None:
    pks = list((await session.scalars(select(Incident.pk).where(Incident.id.in_(ids)))).all())
    if pks:
        await fulltext.delete_documents(session, pks)
        await session.execute(delete(Incident).where(Incident.pk.in_(pks)))


async def _insert_batch(
    session: AsyncSession, batch: Sequence[IncidentRecord], now: dt.datetime
) -> None:
    firms = [{url: firm_for_url(url) for url in r.references} for r in batch]
    rows = [
        {
            "id": r.id,
            "date": r.date,
            "date_precision": r.date_precision,
            "protocol": r.protocol,
            "loss_usd": r.loss_usd,
            "loss_usd_basis": r.loss_usd_basis,
            "loss_text": r.loss_text,
            "attack_type": classify_attack(r.attack_type_raw).value,
            "attack_type_raw": r.attack_type_raw,
            "description": r.description,
            "status": r.status,
            "funds_returned": r.funds_returned,
            "updated_at": now,
            "chain_list": list(dict.fromkeys(r.chains)),
            "source_list": sorted({firm for firm in firm_of.values() if firm}),
        }
        for r, firm_of in zip(batch, firms, strict=True)
    ]
    # Core inserts on the tables, not ORM bulk inserts: several times faster for big loads.
    incidents = _table(Incident)
    result = await session.execute(
        insert(incidents).returning(incidents.c.pk, incidents.c.id, sort_by_parameter_order=True),
        rows,
    )
    pk_by_id = {incident_id: pk for pk, incident_id in result}

    chains, addresses, transactions, references, provenance = [], [], [], [], []
    documents = []
    for record, row, firm_of in zip(batch, rows, firms, strict=True):
        pk = pk_by_id[record.id]
        chains += [{"incident_pk": pk, "chain": c} for c in dict.fromkeys(record.chains)]
        addresses += [{"incident_pk": pk, **a.model_dump(mode="json")} for a in record.addresses]
        transactions += [
            {"incident_pk": pk, **t.model_dump(mode="json")} for t in record.transactions
        ]
        references += [
            {"incident_pk": pk, "url": url, "firm": firm} for url, firm in firm_of.items()
        ]
        provenance.append(
            {
                "incident_pk": pk,
                "source": record.source.name,
                "source_ref": record.source.ref,
                "source_url": record.source.url,
                "ingested_at": now,
            }
        )
        documents.append(
            fulltext.document(
                pk,
                record.protocol,
                str(row["attack_type"]),
                record.attack_type_raw,
                record.description,
            )
        )
    for table, values in (
        (IncidentChain, chains),
        (IncidentAddress, addresses),
        (IncidentTransaction, transactions),
        (IncidentReference, references),
    ):
        if values:
            await session.execute(insert(_table(table)), values)
    await fulltext.write_documents(session, documents)

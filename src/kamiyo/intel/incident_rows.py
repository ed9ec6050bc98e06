"""An incident's rows: its own columns, and what hangs off it (chains, addresses,
transactions, references, names and its search document), written for ingest and for the
operator's split and merge (``intel/corrections.py``)."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, delete, insert
from sqlalchemy.ext.asyncio import AsyncSession

from kamiyo.db.tables import (
    Base,
    IncidentAddress,
    IncidentChain,
    IncidentName,
    IncidentReference,
    IncidentTransaction,
)
from kamiyo.intel import fulltext
from kamiyo.intel.canonical import Canonical
from kamiyo.intel.vocabulary import firm_for_url


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class, for bulk inserts (no ORM objects made)."""
    return Base.metadata.tables[model.__tablename__]


def incident_row(derived: Canonical) -> dict[str, Any]:
    firms = sorted({f for u in derived.references if (f := firm_for_url(u))})
    return {**derived.fields, "firm_list": firms}


async def write_children(
    session: AsyncSession, derived: dict[int, Canonical], *, replace: Iterable[int] = ()
) -> None:
    """(Re)write the chains, addresses, transactions, references, names and search document
    of each incident in ``derived``; ``replace`` lists those that had some before."""
    stale = list(replace)
    if stale:
        for table in (
            IncidentChain,
            IncidentAddress,
            IncidentTransaction,
            IncidentReference,
            IncidentName,
        ):
            await session.execute(delete(table).where(table.incident_pk.in_(stale)))
    chains, addresses, transactions, references, names, documents = [], [], [], [], [], []
    for pk, fields in derived.items():
        chains += [
            {
                "incident_pk": pk,
                "chain": c,
                "date": fields.fields["date"],
                "loss_usd": fields.fields["loss_usd"],
            }
            for c in fields.chains
        ]
        addresses += [{"incident_pk": pk, **a} for a in fields.addresses]
        transactions += [{"incident_pk": pk, **t} for t in fields.transactions]
        references += [
            {"incident_pk": pk, "url": url, "firm": firm_for_url(url)} for url in fields.references
        ]
        names += [{"incident_pk": pk, "key": k, "name": n} for k, n in fields.names.items()]
        documents.append(
            fulltext.document(
                pk,
                " ".join(fields.names.values()) or str(fields.fields["protocol"]),
                str(fields.fields["attack_type"]),
                fields.fields["attack_type_raw"],
                fields.searchable_description,
            )
        )
    for table, values in (
        (IncidentChain, chains),
        (IncidentAddress, addresses),
        (IncidentTransaction, transactions),
        (IncidentReference, references),
        (IncidentName, names),
    ):
        if values:
            await session.execute(insert(table_of(table)), values)
    await fulltext.write_documents(session, documents)

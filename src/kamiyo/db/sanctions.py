"""The sanctions lists' table: one row per address per list (a module of its own beside
``tables.py``, on the same metadata, so that file stays one a reader takes in at once).

A list is replaced whole by each complete load (``intel/sanctions.py``); every row of a list
carries the list's date and where that copy came from, so an answer can say both.
"""

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base, UTCDateTime


class SanctionedAddress(Base):
    __tablename__ = "sanctioned_addresses"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The form ``chains.normalize_address`` keeps (EVM in lower case): what screening looks up.
    address: Mapped[str] = mapped_column(String(128), index=True)
    # The asset codes the list gives the address under (OFAC's: ETH, XBT, USDT...), sorted.
    assets: Mapped[list[Any]] = mapped_column(JSON)
    list_name: Mapped[str] = mapped_column(String(32))  # e.g. ofac_sdn
    list_date: Mapped[dt.date] = mapped_column(Date)
    origin: Mapped[str] = mapped_column(String(16))  # bundle, live or import
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("list_name", "address"),)

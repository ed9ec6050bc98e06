"""The stats call's pre-aggregated totals (kept by ``intel/stats_summary.py``)."""

import datetime as dt

from sqlalchemy import Date, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kamiyo.db.tables import Base


class _StatsTotals:
    """The measures of a row of pre-aggregated totals (``intel/stats_summary.py``)."""

    # The primary key leads with the chain: a call reads one chain's (or the overall) rows.
    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    attack_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    incidents: Mapped[int] = mapped_column(Integer)
    # Sum and count of the counted losses (nominal figures left out, as in intel/stats.py).
    loss_usd: Mapped[float] = mapped_column(Float)
    with_loss: Mapped[int] = mapped_column(Integer)


class IncidentDayStats(_StatsTotals, Base):
    """Totals of the incidents of one day and attack type, overall (``chain`` "") and per chain,
    kept by every write to incidents; a stats call reads them for the partial months at the
    ends of its date range."""

    __tablename__ = "incident_day_stats"
    __table_args__ = (
        # The ends of a range grouped by chain read every chain's rows of a few days.
        Index("ix_incident_day_stats_day", "day"),
        {"sqlite_with_rowid": False},  # rows stored in key order, read in ranges
    )

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)


class IncidentMonthStats(_StatsTotals, Base):
    """The same totals per month (``month``: its first day): a stats call reads these for the
    whole months of its range, a few thousand rows whatever the number of incidents."""

    __tablename__ = "incident_month_stats"
    __table_args__ = ({"sqlite_with_rowid": False},)

    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)

from __future__ import annotations

import datetime as dt

from sqlalchemy import CHAR, CheckConstraint, DateTime, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase


class BillingPeriod(SharedBase):
    """A closed billing month (``flask usage close``, migration 0010).

    Ledger rows that arrive for a closed month are billed in the next open one
    (``llm_usage.billing_period``, set by the ledger's insert trigger). ``sealed_at``:
    when the month's files were written; from then on they are only verified.
    """

    __tablename__ = "billing_periods"
    __table_args__ = (
        CheckConstraint("period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'", name="period_format"),
    )

    period: Mapped[str] = mapped_column(CHAR(7), primary_key=True)
    closed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True),
                                                   server_default=func.now())
    sealed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

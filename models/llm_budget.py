from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase, str_64, updated_ts


class LlmBudget(SharedBase):
    """A tenant's token budget for the month and its per-minute window (atomic counters)."""

    __tablename__ = "llm_budgets"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    monthly_tokens: Mapped[int | None] = mapped_column(BigInteger)
    period: Mapped[str_64]
    used: Mapped[int] = mapped_column(BigInteger, server_default="0")
    reserved: Mapped[int] = mapped_column(BigInteger, server_default="0")
    minute_start: Mapped[dt.datetime | None]
    minute_requests: Mapped[int] = mapped_column(Integer, server_default="0")
    minute_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[updated_ts]

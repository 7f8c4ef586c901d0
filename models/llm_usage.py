from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Integer,
    Numeric,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase, created_ts, str_64, str_255, tenant_fk


class LlmUsage(SharedBase):
    """One LLM call, metered: the append-only usage ledger billing reads.

    ``cost`` is in ``currency`` at ``price_version`` (llm/prices.py; ``legacy-usd`` for
    rows rated before versioned prices, in USD). ``artifact_kind``/``artifact_id``: the
    therapy session or conversation the call served (migration 0008).
    """

    __tablename__ = "llm_usage"
    __table_args__ = (
        CheckConstraint(
            "(artifact_kind IS NULL AND artifact_id IS NULL) OR "
            "(artifact_kind IS NOT NULL AND artifact_kind IN ('session', 'conversation') "
            "AND artifact_id IS NOT NULL)",
            name="artifact"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[tenant_fk] = mapped_column(index=True)
    user_id: Mapped[str_255]
    feature: Mapped[str_64]
    deployment: Mapped[str_64]
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    reasoning_tokens: Mapped[int] = mapped_column(Integer)
    cost: Mapped[Decimal] = mapped_column(Numeric(14, 8))
    latency_ms: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str_64]
    usage_source: Mapped[str_64]
    request_id: Mapped[str_64 | None]
    created_at: Mapped[created_ts]
    price_version: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(CHAR(3))
    artifact_kind: Mapped[str | None] = mapped_column(String(32))
    artifact_id: Mapped[uuid.UUID | None]
    # When the call started (its price and line-item date) and the month that bills it,
    # set by the ledger's insert trigger (migration 0010).
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    billing_period: Mapped[str] = mapped_column(CHAR(7))

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger, Identity, Integer, Numeric
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase, created_ts, str_64, str_255, tenant_fk


class LlmUsage(SharedBase):
    """One LLM call, metered: the append-only usage ledger billing reads."""

    __tablename__ = "llm_usage"

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

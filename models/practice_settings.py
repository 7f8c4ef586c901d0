from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Integer, SmallInteger
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, tenant_fk, updated_ts


class PracticeSettings(TenantBase):
    """The practice's own settings: one row per tenant schema, absent until first set
    (then the defaults apply: consent required, the platform's retention period)."""

    __tablename__ = "practice_settings"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    tenant_id: Mapped[tenant_fk]
    ai_consent_required: Mapped[bool] = mapped_column(Boolean, server_default="true")
    # Years to keep a record after treatment ended; NULL: the platform's default.
    record_retention_years: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[updated_ts]

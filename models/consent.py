from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk, uuid_pk

CONSENT_PURPOSES = ("ai_assistance",)


class ClientConsent(TenantBase):
    """A client's consent to one purpose of processing: who recorded it and when, and
    when and by whom it was withdrawn. Rows are kept after withdrawal (the history is
    the practice's proof); at most one current (not withdrawn) consent per purpose."""

    __tablename__ = "client_consents"
    __table_args__ = (
        CheckConstraint("purpose IN (" + ", ".join(f"'{p}'" for p in CONSENT_PURPOSES) + ")",
                        name="purpose"),
        Index("uq_client_consents_current", "client_id", "purpose", unique=True,
              postgresql_where=text("withdrawn_at IS NULL")),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str_64]
    document_reference: Mapped[str_255 | None]
    recorded_by: Mapped[str_255]
    given_at: Mapped[created_ts]
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    withdrawn_by: Mapped[str_255 | None]

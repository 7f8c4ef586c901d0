from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk, uuid_pk

EXPORT_KINDS = ("client", "practice")
EXPORT_STATUSES = ("pending", "running", "ready", "failed")


class DataExport(TenantBase):
    """A copy of a client's record (GDPR Art. 15/20) or of the whole practice, as one
    ZIP in the tenant's container. Expires (and its file is deleted) after 30 days."""

    __tablename__ = "data_exports"
    __table_args__ = (
        CheckConstraint(f"kind IN {EXPORT_KINDS!r}", name="kind"),
        CheckConstraint(f"status IN {EXPORT_STATUSES!r}", name="status"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    kind: Mapped[str_64]
    client_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    status: Mapped[str_64] = mapped_column(default="pending", server_default="pending")
    blob_name: Mapped[str_255 | None]
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str_64 | None]
    error: Mapped[str_64 | None]  # a machine code, never a message with record content
    requested_by: Mapped[str_255]
    created_at: Mapped[created_ts]
    finished_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime]

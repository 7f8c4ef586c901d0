from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase, str_64, updated_ts


class TenantMigration(SharedBase):
    """Outcome of the last tenant-migration run for one tenant schema (platform only)."""

    __tablename__ = "tenant_migrations"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str_64]
    revision: Mapped[str_64 | None]
    error: Mapped[str | None]
    duration_ms: Mapped[int | None]
    updated_at: Mapped[updated_ts]



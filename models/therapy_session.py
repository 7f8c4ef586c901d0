from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, tenant_fk, updated_ts, uuid_pk

MODALITIES = ("in_person", "video", "phone")


class TherapySession(TenantBase):
    """One appointment with a client."""

    __tablename__ = "therapy_sessions"
    __table_args__ = (
        CheckConstraint(f"modality IN {MODALITIES!r}", name="modality"),
        CheckConstraint("duration_minutes BETWEEN 1 AND 600", name="duration"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[dt.datetime]
    duration_minutes: Mapped[int] = mapped_column(Integer)
    modality: Mapped[str_64]
    transcript: Mapped[str | None]
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (SQLAlchemy's declarative hook)

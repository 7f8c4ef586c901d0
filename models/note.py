from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    TenantBase,
    created_ts,
    str_64,
    str_255,
    tenant_fk,
    updated_ts,
    uuid_pk,
)

# The sections each documentation format is made of, in display order.
NOTE_FORMATS: dict[str, tuple[str, ...]] = {
    "SOAP": ("subjective", "objective", "assessment", "plan"),
    "DAP": ("data", "assessment", "plan"),
    "BIRP": ("behavior", "intervention", "response", "plan"),
    "free": ("text",),
}
NOTE_STATUSES = ("draft", "signed")
NOTE_SOURCES = ("manual", "ai")


class Note(TenantBase):
    """Clinical documentation of one session; immutable once signed."""

    __tablename__ = "notes"
    __table_args__ = (
        CheckConstraint(f"format IN {tuple(NOTE_FORMATS)!r}", name="format"),
        CheckConstraint(f"status IN {NOTE_STATUSES!r}", name="status"),
        CheckConstraint(f"source IN {NOTE_SOURCES!r}", name="source"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("therapy_sessions.id", ondelete="CASCADE"), index=True
    )
    format: Mapped[str_64]
    content: Mapped[dict[str, Any]]
    status: Mapped[str_64] = mapped_column(default="draft", server_default="draft")
    source: Mapped[str_64] = mapped_column(default="manual", server_default="manual")
    author_id: Mapped[str_255]
    signed_by: Mapped[str_255 | None]
    signed_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (SQLAlchemy's declarative hook)

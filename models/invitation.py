from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase, created_ts, str_64, str_255, tenant_fk, uuid_pk
from models.membership import ROLES


class Invitation(SharedBase):
    """A single-use, expiring invitation into a practice. Only the code's hash is stored."""

    __tablename__ = "invitations"
    __table_args__ = (CheckConstraint(f"role IN {ROLES!r}", name="role"),)

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE")
    )
    code_hash: Mapped[str_64] = mapped_column(unique=True)
    email: Mapped[str_255]
    role: Mapped[str_255]
    created_by: Mapped[str_255]
    created_at: Mapped[created_ts]
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None]
    accepted_by: Mapped[str_255 | None]



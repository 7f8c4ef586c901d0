from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Date, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk, updated_ts, uuid_pk

CLIENT_STATUSES = ("active", "inactive", "discharged")


class Client(TenantBase):
    """A person in therapy with the practice."""

    __tablename__ = "clients"
    __table_args__ = (
        CheckConstraint(f"status IN {CLIENT_STATUSES!r}", name="status"),
        # The client list's order: a page is an index range, not a sort of every client.
        Index("ix_clients_last_name_id", "last_name", "id"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[tenant_fk]
    first_name: Mapped[str_255]
    last_name: Mapped[str_255]
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    contact: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    assigned_therapist_id: Mapped[str_255 | None] = mapped_column(index=True)
    status: Mapped[str_64] = mapped_column(default="active", server_default="active")
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (SQLAlchemy's declarative hook)

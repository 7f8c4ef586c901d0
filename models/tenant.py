from __future__ import annotations

from sqlalchemy import CheckConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase, created_ts, str_64, str_255, updated_ts, uuid_pk

# closing: offboarding has begun (every token refused); erased: its data is gone.
TENANT_STATUSES = ("active", "suspended", "deleted", "closing", "erased")


class Tenant(SharedBase):
    """A practice. Its clinical data lives in the schema ``t_<id hex>``."""

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint(f"status IN {TENANT_STATUSES!r}", name="status"),
    )

    id: Mapped[uuid_pk]
    name: Mapped[str_255]
    schema_name: Mapped[str_64] = mapped_column(unique=True)
    status: Mapped[str_64] = mapped_column(default="active", server_default="active")
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    def __repr__(self) -> str:
        return f"<Tenant {self.id} {self.status}>"




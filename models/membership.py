from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from models.base import SharedBase, created_ts, str_255, tenant_fk, updated_ts

ADMIN = "admin"  # everything in the practice
THERAPIST = "therapist"  # only the clients assigned to them
ROLES = (ADMIN, THERAPIST)


class Membership(SharedBase):
    """A user's role in one practice. ``user_id`` is the token subject (B2C object id)."""

    __tablename__ = "memberships"
    __table_args__ = (CheckConstraint(f"role IN {ROLES!r}", name="role"),)

    tenant_id: Mapped[tenant_fk] = mapped_column(
        ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True
    )
    # One practice per user: the B2C claims connector issues a single tenant claim.
    user_id: Mapped[str_255] = mapped_column(primary_key=True, unique=True)
    role: Mapped[str_255]
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    def __repr__(self) -> str:
        return f"<Membership {self.tenant_id} {self.role}>"



from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Identity, Index, Integer
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk

# The columns the application writes; the app role may INSERT only these (public
# migration 0006): the id, the practice and the time are the database's.
SECURITY_WRITE_COLUMNS = ("actor_id", "actor_role", "method", "route", "status", "error",
                          "resource_ids", "request_id", "client_request_id")


class SecurityEvent(TenantBase):
    """A refused attempt on a clinical record by a member of the practice: who, which
    route and record ids, which refusal. Append-only; never clinical text or a body."""

    __tablename__ = "security_events"
    # Which events name a record: a client's access log in an export, re-pointing on
    # erasure, the admin filter by resource_id.
    __table_args__ = (
        Index("ix_security_events_resource_ids", "resource_ids", postgresql_using="gin"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[tenant_fk]
    occurred_at: Mapped[created_ts]
    actor_id: Mapped[str_255]
    actor_role: Mapped[str_64]
    method: Mapped[str_64]
    route: Mapped[str_255]  # the route's template, e.g. /api/v1/clients/<uuid:client_id>
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str_64 | None]
    # The record ids the request named in its path (never looked up: they may not exist).
    resource_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)))
    request_id: Mapped[str_64 | None]
    client_request_id: Mapped[str_64 | None]

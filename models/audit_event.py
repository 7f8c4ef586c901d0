from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Identity, Index
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk

# The columns the application writes (the rest are the database's: id, tenant, time), in
# the order of every raw INSERT of an event (api/db.py, api/pagination.py).
# The app role may INSERT only these columns (public migration 0006): it cannot backdate an
# event or choose its id or practice.
AUDIT_WRITE_COLUMNS = ("actor_id", "actor_role", "action", "resource_type", "resource_ids",
                       "request_id", "client_request_id")


class AuditEvent(TenantBase):
    """Who did what to which clinical record, when. Append-only; never clinical text."""

    __tablename__ = "audit_events"
    # Which events name a record: a client's access log in an export, re-pointing on
    # erasure, the admin filter by resource_id.
    __table_args__ = (
        Index("ix_audit_events_resource_ids", "resource_ids", postgresql_using="gin"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[tenant_fk]
    occurred_at: Mapped[created_ts]
    actor_id: Mapped[str_255]
    actor_role: Mapped[str_64]
    action: Mapped[str_64]
    resource_type: Mapped[str_64]
    # One event per request: a list read names every record it returned.
    resource_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)))
    request_id: Mapped[str_64 | None]  # the server's id of the request
    client_request_id: Mapped[str_64 | None]  # the X-Request-ID the caller sent, if usable


# Unqualified: resolved in the tenant schema through the transaction's search_path.
AUDIT_INSERT = f"INSERT INTO {AuditEvent.__tablename__} ({', '.join(AUDIT_WRITE_COLUMNS)})"



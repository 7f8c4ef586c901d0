from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Date,
    ForeignKey,
    Index,
    Integer,
    Text,
    delete,
    event,
    insert,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import TenantBase, created_ts, str_64, str_255, tenant_fk, updated_ts, uuid_pk
from models.identity import identity_keys

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
    # Retention (§ 630f(3) BGB): the record is kept until treatment_ended_on plus the
    # practice's retention period (api/lifecycle.py computes retain_until).
    treatment_ended_on: Mapped[dt.date | None] = mapped_column(Date)
    # Restriction of processing (GDPR Art. 18): hidden from therapists, read-only for admins.
    restricted_at: Mapped[dt.datetime | None]
    restricted_by: Mapped[str_255 | None]
    restriction_reason: Mapped[str | None]

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (SQLAlchemy's declarative hook)


class ClientIdentityKey(TenantBase):
    """One searchable key of a client's identifiers (``models/identity.py``): the clients
    a text may mention are those with a key the text has. Written with every insert and
    update of a client (below), never by hand.

    A table of (key, client) rather than an array column: ``key = ANY(:keys)`` is
    text equality, which PostgreSQL may evaluate inside an index scan under row-level
    security (it is leakproof); an array operator is not, so under RLS every client row
    would be read (measured: docs/PERFORMANCE.md, masking).
    """

    __tablename__ = "client_identity_keys"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True, index=True)
    tenant_id: Mapped[tenant_fk]


@event.listens_for(Client, "after_insert")
@event.listens_for(Client, "after_update")
def _write_identity_keys(_mapper: Any, connection: Connection, client: Client) -> None:
    contact = client.contact or {}
    email, phone, address = (value if isinstance(value := contact.get(key), str) else None
                             for key in ("email", "phone", "address"))
    keys = identity_keys(client.first_name, client.last_name, client.date_of_birth, email,
                         phone, address)
    connection.execute(delete(ClientIdentityKey)
                       .where(ClientIdentityKey.client_id == client.id))
    if keys:
        connection.execute(insert(ClientIdentityKey), [{"key": key, "client_id": client.id}
                                                       for key in keys])

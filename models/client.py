from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Date, Index, Integer, Text, event
from sqlalchemy.dialects.postgresql import ARRAY
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
        # Which clients a text may mention, found by the keys in the text (models/identity.py).
        Index("ix_clients_identity_keys", "identity_keys", postgresql_using="gin"),
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
    # Written on every insert and update from the identifying fields (never by hand); deferred:
    # only the masking lookup reads it.
    identity_keys: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default="{}", deferred=True)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (SQLAlchemy's declarative hook)


@event.listens_for(Client, "before_insert")
@event.listens_for(Client, "before_update")
def _write_identity_keys(_mapper: Any, _connection: Any, client: Client) -> None:
    contact = client.contact or {}
    email, phone = contact.get("email"), contact.get("phone")
    client.identity_keys = identity_keys(
        client.first_name, client.last_name, client.date_of_birth,
        email if isinstance(email, str) else None, phone if isinstance(phone, str) else None)

"""Declarative bases, naming convention and shared column types."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, ClassVar

from sqlalchemy import DateTime, MetaData, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, mapped_column

# Stable constraint names keep Alembic autogenerate and hand-written migrations in step.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

uuid_pk = Annotated[
    uuid.UUID,
    mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
]
# The tenant column defaults to the transaction's tenant setting (empty once a pooled
# connection has used and reset it, hence NULLIF): a row written without
# a tenant context gets NULL and violates NOT NULL, so writes fail closed.
tenant_fk = Annotated[
    uuid.UUID,
    mapped_column(
        UUID(as_uuid=True),
        nullable=False,
        server_default=text(
            "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"
        ),
    ),
]
created_ts = Annotated[
    dt.datetime, mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
]
updated_ts = Annotated[
    dt.datetime,
    mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    ),
]
str_64 = Annotated[str, 64]
str_255 = Annotated[str, 255]


class _Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        uuid.UUID: UUID(as_uuid=True),
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        str_64: String(64),
        str_255: String(255),
        str: Text,
    }


class SharedBase(_Base):
    """Tables in the ``public`` schema."""

    __abstract__ = True
    metadata = MetaData(schema="public", naming_convention=NAMING_CONVENTION)


class TenantBase(_Base):
    """Tables that exist once per tenant schema."""

    __abstract__ = True
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

"""Alembic environment applied to one tenant schema at a time.

The fan-out runner (``tenancy.migrate``) does not execute this file: it configures
the same environment in-process for each tenant. This file exists so a single schema
can be migrated with plain Alembic too, given a connection whose ``search_path``
already points at the tenant schema::

    config.attributes["connection"] = conn; config.attributes["schema"] = "t_<hex>"
"""

from __future__ import annotations

from alembic import context

from models import TenantBase

config = context.config
connection = config.attributes.get("connection")
schema = config.attributes.get("schema")
if connection is None or schema is None:
    raise RuntimeError("run tenant migrations with `flask tenancy upgrade`")

context.configure(
    connection=connection,
    target_metadata=TenantBase.metadata,
    version_table_schema=schema,
)
with context.begin_transaction():
    context.run_migrations()

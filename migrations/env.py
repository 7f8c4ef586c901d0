"""Alembic environment for the shared ``public`` schema.

Run through ``flask tenancy upgrade``, which passes an owner connection in
``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from models import SharedBase

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `flask tenancy upgrade`, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=SharedBase.metadata,
    version_table_schema="public",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()

"""Index the keys of each client's identifiers, so masking finds other clients by lookup.

Revision ID: t0005_client_identity_keys
Revises: t0004_client_list_index
Create Date: 2026-12-01

Before a text goes to the model, the names, birth dates, e-mails, phone numbers and
addresses of the practice's other clients are masked. Until now the 500 newest clients
were scanned, so an older client's name reached the model. ``client_identity_keys``
(written by the model layer with every insert and update, ``models/identity.py``) lets
the keys found in the text select the clients it may mention, whatever the size of the
practice. Existing clients get their keys here, from the same function.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from models.identity import identity_keys

revision = "t0005_client_identity_keys"
down_revision = "t0004_client_list_index"
branch_labels = None
depends_on = None

TENANT_SETTING = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"


def upgrade() -> None:
    op.create_table(
        "client_identity_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("client_id", UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False,
                  server_default=sa.text(TENANT_SETTING)),
        sa.PrimaryKeyConstraint("key", "client_id", name="pk_client_identity_keys"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE",
                                name="fk_client_identity_keys_client_id_clients"),
    )
    op.create_index("ix_client_identity_keys_client_id", "client_identity_keys",
                    ["client_id"])
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, first_name, last_name, date_of_birth, contact->>'email' AS email, "
        "contact->>'phone' AS phone, contact->>'address' AS address FROM clients")).all()
    keys = [{"key": key, "client_id": row.id}
            for row in rows
            for key in identity_keys(row.first_name, row.last_name, row.date_of_birth,
                                     row.email, row.phone, row.address)]
    if keys:
        conn.execute(sa.text("INSERT INTO client_identity_keys (key, client_id) "
                             "VALUES (:key, :client_id)"), keys)


def downgrade() -> None:
    op.drop_table("client_identity_keys")

"""Index the keys of each client's identifiers, so masking finds other clients by lookup.

Revision ID: t0005_client_identity_keys
Revises: t0004_client_list_index
Create Date: 2026-12-01

Before a text goes to the model, the names, birth dates, e-mails and phone numbers of
the practice's other clients are masked. Until now the 500 newest clients were scanned;
an older client's name reached the model. ``identity_keys`` (written by the model layer
on every insert and update, ``models/identity.py``) with a GIN index lets the keys found
in the text select the clients it may mention, whatever the size of the practice.
Existing rows are filled here with the same function.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from models.identity import identity_keys

revision = "t0005_client_identity_keys"
down_revision = "t0004_client_list_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("identity_keys", ARRAY(sa.Text()), nullable=False,
                                       server_default="{}"))
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, first_name, last_name, date_of_birth, contact->>'email' AS email, "
        "contact->>'phone' AS phone FROM clients")).all()
    for row in rows:
        conn.execute(sa.text("UPDATE clients SET identity_keys = :keys WHERE id = :id"),
                     {"keys": identity_keys(row.first_name, row.last_name, row.date_of_birth,
                                            row.email, row.phone), "id": row.id})
    op.create_index("ix_clients_identity_keys", "clients", ["identity_keys"],
                    postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_clients_identity_keys", table_name="clients")
    op.drop_column("clients", "identity_keys")

"""Index the client list's order (last name, id).

Revision ID: t0004_client_list_index
Revises: t0003_rls_initplan
Create Date: 2026-11-25

``GET /clients`` pages by last name. Without an index every page sorted all of the
practice's clients (a top-N sort that also had to carry the page's total count on every
row); with it a page is an index range. Measured in docs/PERFORMANCE.md.
"""

from __future__ import annotations

from alembic import op

revision = "t0004_client_list_index"
down_revision = "t0003_rls_initplan"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_clients_last_name_id", "clients", ["last_name", "id"])


def downgrade() -> None:
    op.drop_index("ix_clients_last_name_id", table_name="clients")

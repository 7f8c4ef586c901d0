"""Keep the caller's X-Request-ID beside the server's request id in audit events.

Revision ID: t0006_audit_client_request_id
Revises: t0005_client_identity_keys
Create Date: 2026-12-01

``request_id`` used to be whatever the caller sent as ``X-Request-ID``; it is now the
server's own id, and the caller's (validated) value goes to ``client_request_id``. The
runner re-secures the schema after this step, which applies public migration 0006's
column-level INSERT privileges on ``audit_events`` to existing practices.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0006_audit_client_request_id"
down_revision = "t0005_client_identity_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("client_request_id", sa.String(64)))


def downgrade() -> None:
    op.drop_column("audit_events", "client_request_id")

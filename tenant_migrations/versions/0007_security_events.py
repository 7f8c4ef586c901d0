"""Security events: refused attempts on clinical records, for the practice's admins.

Revision ID: t0007_security_events
Revises: t0006_audit_client_request_id
Create Date: 2026-12-01

A member's request for a clinical record that is refused (404 for a record they may not
see or that is not in their practice, 403, 409, 412) used to leave no trace. Each now
appends one row: who, which route and which record ids the path named, which refusal.
No body, no clinical text. Append-only for the app role (public migration 0006).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "t0007_security_events"
down_revision = "t0006_audit_client_request_id"
branch_labels = None
depends_on = None

TENANT_SETTING = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"


def upgrade() -> None:
    op.create_table(
        "security_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False,
                  server_default=sa.text(TENANT_SETTING)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("actor_id", sa.String(255), nullable=False),
        sa.Column("actor_role", sa.String(64), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("route", sa.String(255), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(64)),
        sa.Column("resource_ids", ARRAY(UUID(as_uuid=True)), nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("client_request_id", sa.String(64)),
        sa.PrimaryKeyConstraint("id", name="pk_security_events"),
    )


def downgrade() -> None:
    op.drop_table("security_events")

"""Clinical records: clients, therapy sessions, notes, audit events.

Revision ID: t0001_clinical
Revises:
Create Date: 2026-11-25

Row-level security, the tenant pin and grants are not written here: the runner
applies them to every table of the schema after each upgrade
(``tenancy.security.secure_tenant_schema``), so a table added later can't miss them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "t0001_clinical"
down_revision = None
branch_labels = None
depends_on = None

TENANT_SETTING = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"


def _common() -> list[sa.Column[object]]:
    return [
        sa.Column("id", UUID(as_uuid=True), primary_key=True,
                  server_default=sa.text("gen_random_uuid()")),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False,
                  server_default=sa.text(TENANT_SETTING)),
    ]


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    ]


def upgrade() -> None:
    op.create_table(
        "clients",
        *_common(),
        sa.Column("first_name", sa.String(255), nullable=False),
        sa.Column("last_name", sa.String(255), nullable=False),
        sa.Column("date_of_birth", sa.Date()),
        sa.Column("contact", JSONB(), nullable=False, server_default="{}"),
        sa.Column("assigned_therapist_id", sa.String(255)),
        sa.Column("status", sa.String(64), nullable=False, server_default="active"),
        *_stamps(),
        sa.CheckConstraint("status IN ('active', 'inactive', 'discharged')", name="status"),
    )
    op.create_index("ix_clients_assigned_therapist_id", "clients", ["assigned_therapist_id"])
    op.create_table(
        "therapy_sessions",
        *_common(),
        sa.Column("client_id", UUID(as_uuid=True),
                  sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(64), nullable=False),
        sa.Column("transcript", sa.Text()),
        *_stamps(),
        sa.CheckConstraint("modality IN ('in_person', 'video', 'phone')", name="modality"),
        sa.CheckConstraint("duration_minutes BETWEEN 1 AND 600", name="duration"),
    )
    op.create_index("ix_therapy_sessions_client_id", "therapy_sessions", ["client_id"])
    op.create_table(
        "notes",
        *_common(),
        sa.Column("session_id", UUID(as_uuid=True),
                  sa.ForeignKey("therapy_sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("content", JSONB(), nullable=False),
        sa.Column("status", sa.String(64), nullable=False, server_default="draft"),
        sa.Column("source", sa.String(64), nullable=False, server_default="manual"),
        sa.Column("author_id", sa.String(255), nullable=False),
        sa.Column("signed_by", sa.String(255)),
        sa.Column("signed_at", sa.DateTime(timezone=True)),
        *_stamps(),
        sa.CheckConstraint("format IN ('SOAP', 'DAP', 'BIRP', 'free')", name="format"),
        sa.CheckConstraint("status IN ('draft', 'signed')", name="status"),
        sa.CheckConstraint("source IN ('manual', 'ai')", name="source"),
    )
    op.create_index("ix_notes_session_id", "notes", ["session_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False,
                  server_default=sa.text(TENANT_SETTING)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("actor_id", sa.String(255), nullable=False),
        sa.Column("actor_role", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_ids", ARRAY(UUID(as_uuid=True)), nullable=False),
        sa.Column("request_id", sa.String(64)),
    )


def downgrade() -> None:
    for table in ("audit_events", "notes", "therapy_sessions", "clients"):
        op.drop_table(table)

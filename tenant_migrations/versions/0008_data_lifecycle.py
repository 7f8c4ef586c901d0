"""Data lifecycle: consent, retention and restriction, amendments, exports, erasure.

Revision ID: t0008_data_lifecycle
Revises: t0007_security_events
Create Date: 2026-12-01

- ``clients``: ``treatment_ended_on`` (retention runs from it, § 630f(3) BGB) and the
  restriction of processing (GDPR Art. 18): when, by whom, why.
- ``client_consents``: consent per purpose (``ai_assistance``), with its withdrawal.
- ``note_amendments``: corrections of signed notes that keep the original (§ 630f(1) BGB).
- ``practice_settings``: the practice's own settings (one row, absent until set). An
  existing practice gets a row with ``ai_consent_required`` off, so its AI routes keep
  working until an admin turns the check on; a new practice has no row, and the default
  (on) applies.
- ``data_exports``: Art. 15/20 copies of a client's record or the whole practice.
- ``erasure_tombstones``: what remains of an erased client, without personal data.
- GIN indexes on the record ids of audit and security events (access log, re-pointing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "t0008_data_lifecycle"
down_revision = "t0007_security_events"
branch_labels = None
depends_on = None

TENANT_SETTING = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"


def _ids() -> list[sa.Column[object]]:
    return [
        sa.Column("id", UUID(as_uuid=True), primary_key=True,
                  server_default=sa.text("gen_random_uuid()")),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False,
                  server_default=sa.text(TENANT_SETTING)),
    ]


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False,
                     server_default=sa.func.now())


def upgrade() -> None:
    op.add_column("clients", sa.Column("treatment_ended_on", sa.Date()))
    op.add_column("clients", sa.Column("restricted_at", sa.DateTime(timezone=True)))
    op.add_column("clients", sa.Column("restricted_by", sa.String(255)))
    op.add_column("clients", sa.Column("restriction_reason", sa.Text()))
    op.create_table(
        "client_consents",
        *_ids(),
        sa.Column("client_id", UUID(as_uuid=True),
                  sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("document_reference", sa.String(255)),
        sa.Column("recorded_by", sa.String(255), nullable=False),
        _now("given_at"),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True)),
        sa.Column("withdrawn_by", sa.String(255)),
        sa.CheckConstraint("purpose IN ('ai_assistance')", name="purpose"),
    )
    op.create_index("ix_client_consents_client_id", "client_consents", ["client_id"])
    op.create_index("uq_client_consents_current", "client_consents", ["client_id", "purpose"],
                    unique=True, postgresql_where=sa.text("withdrawn_at IS NULL"))
    op.create_table(
        "note_amendments",
        *_ids(),
        sa.Column("note_id", UUID(as_uuid=True),
                  sa.ForeignKey("notes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("content", JSONB(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author_id", sa.String(255), nullable=False),
        _now("created_at"),
    )
    op.create_index("ix_note_amendments_note_id", "note_amendments", ["note_id"])
    op.create_table(
        "practice_settings",
        sa.Column("id", sa.SmallInteger(), primary_key=True, server_default="1"),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False,
                  server_default=sa.text(TENANT_SETTING)),
        sa.Column("ai_consent_required", sa.Boolean(), nullable=False, server_default="true"),
        sa.Column("record_retention_years", sa.Integer()),
        _now("updated_at"),
        sa.CheckConstraint("id = 1", name="single_row"),
    )
    op.execute("INSERT INTO practice_settings (ai_consent_required) VALUES (false)")
    op.create_table(
        "data_exports",
        *_ids(),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("client_id", UUID(as_uuid=True),
                  sa.ForeignKey("clients.id", ondelete="CASCADE")),
        sa.Column("status", sa.String(64), nullable=False, server_default="pending"),
        sa.Column("blob_name", sa.String(255)),
        sa.Column("size_bytes", sa.BigInteger()),
        sa.Column("sha256", sa.String(64)),
        sa.Column("error", sa.String(64)),
        sa.Column("requested_by", sa.String(255), nullable=False),
        _now("created_at"),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('client', 'practice')", name="kind"),
        sa.CheckConstraint("status IN ('pending', 'running', 'ready', 'failed')",
                           name="status"),
    )
    op.create_index("ix_data_exports_client_id", "data_exports", ["client_id"])
    op.create_table(
        "erasure_tombstones",
        *_ids(),
        _now("erased_at"),
        sa.Column("erased_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("record_counts", JSONB(), nullable=False),
        sa.Column("retain_until", sa.Date()),
        sa.CheckConstraint("reason IN ('no_clinical_record', 'retention_ended', "
                           "'created_in_error', 'legal_order', 'other_legal_basis')",
                           name="reason"),
    )
    op.create_index("ix_audit_events_resource_ids", "audit_events", ["resource_ids"],
                    postgresql_using="gin")
    op.create_index("ix_security_events_resource_ids", "security_events", ["resource_ids"],
                    postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_security_events_resource_ids", "security_events")
    op.drop_index("ix_audit_events_resource_ids", "audit_events")
    for table in ("erasure_tombstones", "data_exports", "practice_settings",
                  "note_amendments", "client_consents"):
        op.drop_table(table)
    for column in ("restriction_reason", "restricted_by", "restricted_at",
                   "treatment_ended_on"):
        op.drop_column("clients", column)

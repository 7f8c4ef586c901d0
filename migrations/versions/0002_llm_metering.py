"""LLM metering: per-tenant budgets and the append-only usage ledger.

Revision ID: 0002_llm_metering
Revises: 0001_registry
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002_llm_metering"
down_revision = "0001_registry"
branch_labels = None
depends_on = None

TENANT_SETTING = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"


def upgrade() -> None:
    op.create_table(
        "llm_budgets",
        sa.Column("tenant_id", UUID(as_uuid=True),
                  sa.ForeignKey("public.tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("monthly_tokens", sa.BigInteger()),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reserved", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("minute_start", sa.DateTime(timezone=True)),
        sa.Column("minute_requests", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("minute_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema="public",
    )
    op.create_table(
        "llm_usage",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False,
                  server_default=sa.text(TENANT_SETTING)),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("feature", sa.String(64), nullable=False),
        sa.Column("deployment", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Numeric(14, 8), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("usage_source", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema="public",
    )
    op.create_index("ix_llm_usage_tenant_id", "llm_usage", ["tenant_id", "created_at"],
                    schema="public")
    for table in ("llm_budgets", "llm_usage"):
        op.execute(f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE public.{table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON public.{table} "
            f"USING (tenant_id = {TENANT_SETTING}) WITH CHECK (tenant_id = {TENANT_SETTING})"
        )


def downgrade() -> None:
    op.drop_table("llm_usage", schema="public")
    op.drop_table("llm_budgets", schema="public")

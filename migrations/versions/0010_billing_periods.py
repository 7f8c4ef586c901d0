"""Billing periods: each ledger row's usage time and billing month; closing a month.

Revision ID: 0010_billing_periods
Revises: 0009_billing_summary
Create Date: 2026-12-01

A billing team invoices each practice per month from files that never change once the
month is closed (``flask usage close``), yet the ledger can still receive a row for a
closed month: a stream settled after midnight on its last day, a retried settlement.
Such a row is billed in the next month that is still open, as a correction that names its
original date. This revision makes that assignment exact and fixed when the row is
written:

``public.llm_usage`` gains
- ``started_at`` (timestamptz, NOT NULL): when the call started, the instant its price
  version was chosen for and the date its line item names. Rows written before this
  revision get their ``created_at``; an INSERT that gives none gets its ``created_at``.
- ``billing_period`` (char 7, ``YYYY-MM``, NOT NULL): the month whose invoice carries the
  row. Set by the BEFORE INSERT trigger ``llm_usage_billing_period`` to the first month,
  from the month of ``started_at`` (UTC) on, that is not closed; a value the INSERT gives
  is overwritten. Rows written before this revision get the month of their
  ``created_at`` (no month was closed then). Indexed with ``tenant_id``.

``public.billing_periods`` (period PK, ``closed_at``, ``sealed_at``): one row per closed
month, written by the owner only (``flask usage close``); the app role may read it.
``sealed_at`` is set once the closed month's files are written; from then on they are
only verified, never rewritten.

Why a closed month cannot change: closing takes ``LOCK TABLE public.llm_usage IN SHARE
MODE`` before inserting its row, which waits for every transaction that is inserting a
ledger row and holds new ones back until the close commits. A row inserted afterwards
runs the trigger with the month already closed (each statement of a VOLATILE plpgsql
function reads a fresh snapshot), so no row with ``billing_period`` = a closed month can
appear after its close. The sum over all months is always the whole ledger, because every
row has exactly one ``billing_period``.

``public.billing_usage_summary`` (migration 0009) is replaced by
``billing_usage_summary(p_period text)``: the totals per practice and currency of the
rows whose ``billing_period`` is ``p_period`` (late rows included, and counted apart in
``correction_requests``/``correction_cost``), so the billing read gives what the month's
``summary.csv`` gives. SECURITY DEFINER with a pinned ``search_path`` as before; EXECUTE
revoked from PUBLIC and granted to the app role by ``tenancy.security``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_billing_periods"
down_revision = "0009_billing_summary"
branch_labels = None
depends_on = None

_PERIOD_CHECK = "period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'"
_ASSIGN = """
CREATE FUNCTION public.llm_usage_billing_period() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    v_period text;
BEGIN
    NEW.started_at := coalesce(NEW.started_at, NEW.created_at, now());
    v_period := to_char(NEW.started_at AT TIME ZONE 'UTC', 'YYYY-MM');
    WHILE EXISTS (SELECT 1 FROM public.billing_periods WHERE period = v_period::char(7)) LOOP
        v_period := to_char(to_date(v_period, 'YYYY-MM') + interval '1 month', 'YYYY-MM');
    END LOOP;
    NEW.billing_period := v_period;
    RETURN NEW;
END
$$"""
_SUMMARY = """
CREATE FUNCTION public.billing_usage_summary(p_period text)
RETURNS TABLE (tenant_id uuid, tenant_name text, tenant_status text, currency text,
               requests bigint, prompt_tokens bigint, cached_tokens bigint,
               completion_tokens bigint, estimated_tokens bigint, cost numeric,
               correction_requests bigint, correction_cost numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT u.tenant_id, t.name::text, t.status::text, u.currency::text,
           count(*)::bigint,
           coalesce(sum(u.prompt_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'provider'), 0)::bigint,
           coalesce(sum(u.cached_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'provider'), 0)::bigint,
           coalesce(sum(u.completion_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'provider'), 0)::bigint,
           coalesce(sum(u.prompt_tokens::bigint + u.completion_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'estimated'), 0)::bigint,
           sum(u.cost),
           count(*) FILTER (WHERE to_char(u.started_at AT TIME ZONE 'UTC', 'YYYY-MM')
                                  <> u.billing_period)::bigint,
           coalesce(sum(u.cost) FILTER (WHERE to_char(u.started_at AT TIME ZONE 'UTC',
                                                      'YYYY-MM') <> u.billing_period), 0)
    FROM public.llm_usage u
    LEFT JOIN public.tenants t ON t.id = u.tenant_id
    WHERE u.billing_period = p_period::char(7)  -- char = char: the index is usable
    GROUP BY u.tenant_id, t.name, t.status, u.currency
    ORDER BY u.tenant_id, u.currency
$$"""
# Frozen copy of migration 0009's function (a migration never imports another).
_SUMMARY_0009 = """
CREATE FUNCTION public.billing_usage_summary(p_start timestamptz, p_end timestamptz)
RETURNS TABLE (tenant_id uuid, tenant_name text, tenant_status text, currency text,
               requests bigint, prompt_tokens bigint, cached_tokens bigint,
               completion_tokens bigint, estimated_tokens bigint, cost numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT u.tenant_id, t.name::text, t.status::text, u.currency::text,
           count(*)::bigint,
           coalesce(sum(u.prompt_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'provider'), 0)::bigint,
           coalesce(sum(u.cached_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'provider'), 0)::bigint,
           coalesce(sum(u.completion_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'provider'), 0)::bigint,
           coalesce(sum(u.prompt_tokens::bigint + u.completion_tokens::bigint)
                    FILTER (WHERE u.usage_source = 'estimated'), 0)::bigint,
           sum(u.cost)
    FROM public.llm_usage u
    LEFT JOIN public.tenants t ON t.id = u.tenant_id
    WHERE u.created_at >= p_start AND u.created_at < p_end
    GROUP BY u.tenant_id, t.name, t.status, u.currency
    ORDER BY u.tenant_id, u.currency
$$"""


def upgrade() -> None:
    op.create_table(
        "billing_periods",
        sa.Column("period", sa.CHAR(7), primary_key=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("sealed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(_PERIOD_CHECK, name="period_format"),
        schema="public",
    )
    op.add_column("llm_usage", sa.Column("started_at", sa.DateTime(timezone=True)),
                  schema="public")
    op.add_column("llm_usage", sa.Column("billing_period", sa.CHAR(7)), schema="public")
    op.execute("UPDATE public.llm_usage SET started_at = created_at, "
               "billing_period = to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM')")
    op.alter_column("llm_usage", "started_at", nullable=False, schema="public")
    op.alter_column("llm_usage", "billing_period", nullable=False, schema="public")
    op.create_index("ix_llm_usage_billing_period", "llm_usage",
                    ["billing_period", "tenant_id"], schema="public")
    op.execute(_ASSIGN)
    op.execute("REVOKE ALL ON FUNCTION public.llm_usage_billing_period() FROM PUBLIC")
    op.execute("CREATE TRIGGER llm_usage_billing_period BEFORE INSERT ON public.llm_usage "
               "FOR EACH ROW EXECUTE FUNCTION public.llm_usage_billing_period()")
    op.execute("DROP FUNCTION public.billing_usage_summary(timestamptz, timestamptz)")
    op.execute(_SUMMARY)
    op.execute("REVOKE ALL ON FUNCTION public.billing_usage_summary(text) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION public.billing_usage_summary(text)")
    op.execute(_SUMMARY_0009)
    op.execute("REVOKE ALL ON FUNCTION "
               "public.billing_usage_summary(timestamptz, timestamptz) FROM PUBLIC")
    op.execute("DROP TRIGGER llm_usage_billing_period ON public.llm_usage")
    op.execute("DROP FUNCTION public.llm_usage_billing_period()")
    op.drop_index("ix_llm_usage_billing_period", "llm_usage", schema="public")
    op.drop_column("llm_usage", "billing_period", schema="public")
    op.drop_column("llm_usage", "started_at", schema="public")
    op.drop_table("billing_periods", schema="public")

"""The billing team's cross-tenant usage summary: ``public.billing_usage_summary``.

Revision ID: 0009_billing_summary
Revises: 0008_llm_prices
Create Date: 2026-12-02

The platform bills each practice from the usage ledger (``public.llm_usage``), which
row-level security shows the app role one practice at a time. The billing read
(``GET /api/v1/billing/usage``) needs every practice's totals at once; it gets them
through this named platform path (docs/decisions/tenancy.md, "Cross-tenant platform
work"), never by relaxing RLS for the app role:

``public.billing_usage_summary(p_start, p_end)`` is SECURITY DEFINER (it runs as the
owner, whose ``platform_access`` policy sees every ledger and registry row), with a
pinned ``search_path`` and EXECUTE revoked from PUBLIC; ``tenancy.security`` grants
EXECUTE to the app role (``PUBLIC_APP_FUNCTIONS``). It answers one question only: the
ledger's totals per practice and currency for ``created_at`` in ``[p_start, p_end)``.
Its parameters are two timestamps, never a table, column or tenant name.

- One row per tenant and currency (``EUR``; ``USD`` for rows rated before prices were
  versioned, migration 0008), ordered by tenant id, then currency.
- ``requests``: every ledger row (failed calls too; their tokens are 0 or estimated).
- ``prompt_tokens``, ``cached_tokens``, ``completion_tokens``: only rows whose usage the
  provider reported (``usage_source = 'provider'``); ``estimated_tokens``: prompt plus
  completion tokens of rows counted locally (``usage_source = 'estimated'``). The two
  never mix.
- ``cost``: the exact sum of the rows' ``cost`` in that currency.
- The practice's name and status come from ``public.tenants`` with a LEFT JOIN: an
  offboarded practice (status ``erased``, its schema gone) keeps its registry row and its
  ledger rows, so it is still billed; a ledger row without a registry row (the ledger has
  no foreign key) is still counted, with a null name and status.
"""

from __future__ import annotations

from alembic import op

revision = "0009_billing_summary"
down_revision = "0008_llm_prices"
branch_labels = None
depends_on = None

SIGNATURE = "billing_usage_summary(timestamptz, timestamptz)"


def upgrade() -> None:
    op.execute("""
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
$$""")
    op.execute(f"REVOKE ALL ON FUNCTION public.{SIGNATURE} FROM PUBLIC")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION public.{SIGNATURE}")

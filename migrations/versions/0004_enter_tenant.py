"""Enter a tenant's context in one statement: ``public.enter_tenant``.

Revision ID: 0004_enter_tenant
Revises: 0003_rls_initplan
Create Date: 2026-11-25

Requests open every transaction with ``BEGIN; SELECT ... FROM public.enter_tenant(...)``,
sent as one simple-protocol message: one round trip, no pipeline bookkeeping in the
driver. The function sets both walls transaction-locally (the search_path to the
tenant's schema, whose name it derives from the tenant id by the same rule as
``secure_tenant_schema``, and ``app.tenant_id``), optionally relaxes the commit's WAL
wait for read requests, and reads the tenant's status and the caller's membership under
the row-level security of ``app.tenant_id``. PL/pgSQL keeps that query's plan for the
session; it runs before search_path changes, so a connection moving between tenants
does not replan it. It runs with the caller's rights (no SECURITY DEFINER, no SET clause, which
would undo the settings on exit), so it can show the app role nothing RLS would not.

``public.tenant_membership`` (unused since 0003) is dropped.
"""

from __future__ import annotations

from alembic import op

revision = "0004_enter_tenant"
down_revision = "0003_rls_initplan"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE FUNCTION public.enter_tenant(
    p_tenant uuid, p_user text, p_relaxed_commit boolean,
    OUT tenant_status text, OUT member_role text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- The membership read needs only app.tenant_id (for RLS; its names are qualified), so
    -- it runs before search_path changes: PostgreSQL replans a cached query whenever
    -- search_path differs from the one it was planned under, which would otherwise
    -- happen every time a pooled connection moves to another tenant.
    PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
    SELECT t.status::text, m.role::text INTO tenant_status, member_role
    FROM public.tenants t
    LEFT JOIN public.memberships m ON m.tenant_id = t.id AND m.user_id = p_user
    WHERE t.id = p_tenant;
    -- The commit setting is rewritten to its current value unless the caller relaxes it.
    PERFORM pg_catalog.set_config(
                'search_path', 't_' || pg_catalog.replace(p_tenant::text, '-', '') || ', public',
                true),
            pg_catalog.set_config(
                'synchronous_commit',
                CASE WHEN p_relaxed_commit THEN 'off'
                     ELSE pg_catalog.current_setting('synchronous_commit') END,
                true);
END
$$""")
    op.execute("REVOKE ALL ON FUNCTION public.enter_tenant(uuid, text, boolean) FROM PUBLIC")
    op.execute("DROP FUNCTION public.tenant_membership(uuid, text)")


def downgrade() -> None:
    op.execute("DROP FUNCTION public.enter_tenant(uuid, text, boolean)")
    op.execute("""
CREATE FUNCTION public.tenant_membership(p_tenant uuid, p_user text)
RETURNS TABLE (tenant_status text, member_role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT t.status::text, m.role::text
    FROM public.tenants t
    LEFT JOIN public.memberships m ON m.tenant_id = t.id AND m.user_id = p_user
    WHERE t.id = p_tenant
$$""")
    op.execute("REVOKE ALL ON FUNCTION public.tenant_membership(uuid, text) FROM PUBLIC")

"""Evaluate the tenant setting once per query in every RLS policy, not once per row.

Revision ID: 0003_rls_initplan
Revises: 0002_llm_metering
Create Date: 2026-11-25

``current_setting()`` is STABLE, so PostgreSQL re-evaluates it for each row a policy
filters (about 0.5 ms per 1,000 rows here). Wrapped in a scalar subquery it becomes an
InitPlan, computed once per query. ``secure_tenant_schema`` now writes (and rewrites)
tenant policies this way; tenant migration ``t0003_rls_initplan`` re-secures existing
tenant schemas.

``public.tenant_membership`` is no longer called (requests read the tenant's status and
the caller's membership directly, under RLS, pipelined with the context). It stays until
a later migration, so instances still running the previous code keep working while a
deployment rolls over.
"""

from __future__ import annotations

from alembic import op

revision = "0003_rls_initplan"
down_revision = "0002_llm_metering"
branch_labels = None
depends_on = None

OLD = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"
NEW = f"(SELECT {OLD})"
PUBLIC_POLICIES = {"tenants": "id", "memberships": "tenant_id", "invitations": "tenant_id",
                   "llm_budgets": "tenant_id", "llm_usage": "tenant_id"}


def _policies(setting: str) -> None:
    for table, column in PUBLIC_POLICIES.items():
        op.execute(f"ALTER POLICY tenant_isolation ON public.{table} "
                   f"USING ({column} = {setting}) WITH CHECK ({column} = {setting})")


def upgrade() -> None:
    _policies(NEW)
    op.execute("""
CREATE OR REPLACE FUNCTION public.secure_tenant_schema(
    p_schema name, p_tenant uuid, p_app_role name)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r record;
    setting text := '(SELECT (NULLIF(current_setting(''app.tenant_id''::text, true), '
                    || '''''::text))::uuid)';
BEGIN
    IF p_schema <> 't_' || replace(p_tenant::text, '-', '') THEN
        RAISE EXCEPTION 'schema % does not belong to tenant %', p_schema, p_tenant;
    END IF;
    FOR r IN
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                       AND p.polname = 'tenant_isolation') AS has_policy,
               EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid
                       AND k.conname = 'ck_' || c.relname || '_tenant_pin') AS has_pin
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = p_schema AND c.relkind IN ('r', 'p')
          AND c.relname <> 'alembic_version'
    LOOP
        IF NOT r.relrowsecurity THEN
            EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', p_schema, r.relname);
        END IF;
        IF NOT r.relforcerowsecurity THEN
            EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', p_schema, r.relname);
        END IF;
        IF NOT r.has_policy THEN
            EXECUTE format('CREATE POLICY tenant_isolation ON %I.%I USING (tenant_id = %s) '
                           'WITH CHECK (tenant_id = %s)', p_schema, r.relname, setting, setting);
        ELSE  -- keep existing policies on the current expression
            EXECUTE format('ALTER POLICY tenant_isolation ON %I.%I USING (tenant_id = %s) '
                           'WITH CHECK (tenant_id = %s)', p_schema, r.relname, setting, setting);
        END IF;
        IF NOT r.has_pin THEN
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (tenant_id = %L::uuid)',
                           p_schema, r.relname, 'ck_' || r.relname || '_tenant_pin', p_tenant);
        END IF;
        IF r.relname IN ('audit_events') THEN
            EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I',
                           p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT SELECT, INSERT ON %I.%I TO %I', p_schema, r.relname, p_app_role);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I',
                           p_schema, r.relname, p_app_role);
        END IF;
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', p_schema, p_app_role);
END
$$""")


def downgrade() -> None:
    _policies(OLD)
    op.execute("""
CREATE OR REPLACE FUNCTION public.secure_tenant_schema(
    p_schema name, p_tenant uuid, p_app_role name)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r record;
    setting text := '(NULLIF(current_setting(''app.tenant_id''::text, true), ''''::text))::uuid';
BEGIN
    IF p_schema <> 't_' || replace(p_tenant::text, '-', '') THEN
        RAISE EXCEPTION 'schema % does not belong to tenant %', p_schema, p_tenant;
    END IF;
    FOR r IN
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                       AND p.polname = 'tenant_isolation') AS has_policy,
               EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid
                       AND k.conname = 'ck_' || c.relname || '_tenant_pin') AS has_pin
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = p_schema AND c.relkind IN ('r', 'p')
          AND c.relname <> 'alembic_version'
    LOOP
        IF NOT r.relrowsecurity THEN
            EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', p_schema, r.relname);
        END IF;
        IF NOT r.relforcerowsecurity THEN
            EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', p_schema, r.relname);
        END IF;
        IF NOT r.has_policy THEN
            EXECUTE format('CREATE POLICY tenant_isolation ON %I.%I USING (tenant_id = %s) '
                           'WITH CHECK (tenant_id = %s)', p_schema, r.relname, setting, setting);
        END IF;
        IF NOT r.has_pin THEN
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (tenant_id = %L::uuid)',
                           p_schema, r.relname, 'ck_' || r.relname || '_tenant_pin', p_tenant);
        END IF;
        IF r.relname IN ('audit_events') THEN
            EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I',
                           p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT SELECT, INSERT ON %I.%I TO %I', p_schema, r.relname, p_app_role);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I',
                           p_schema, r.relname, p_app_role);
        END IF;
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', p_schema, p_app_role);
END
$$""")

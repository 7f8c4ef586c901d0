"""Audit events: the app role may insert only the columns the application supplies.

Revision ID: 0006_audit_insert_columns
Revises: 0005_invitation_email
Create Date: 2026-12-01

As the app role, ``INSERT INTO audit_events (actor_id, action, occurred_at, ...)``
succeeded: an event could be backdated. ``secure_tenant_schema`` now grants INSERT on
``audit_events`` for the application's columns only (``models.audit_event.
AUDIT_WRITE_COLUMNS``); ``id``, ``tenant_id`` and ``occurred_at`` come from the database.
A schema still before tenant migration ``t0006`` (which adds ``client_request_id``) keeps
the previous grants until the runner re-secures it after that step. ``security_events``
(tenant migration ``t0007``) is append-only in the same way. What a holder of the
app role's password can and cannot do: docs/decisions/app-role-threat-model.md.
"""

from __future__ import annotations

from alembic import op

revision = "0006_audit_insert_columns"
down_revision = "0005_invitation_email"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
        IF r.relname IN ('audit_events') AND EXISTS (
                SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = p_schema AND c.relname = 'audit_events'
                  AND a.attname = 'client_request_id' AND NOT a.attisdropped) THEN
            -- Append-only, and only the columns the application supplies: the id, the
            -- practice and the time are the database's (no backdated or re-keyed event).
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I',
                           p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT INSERT (actor_id, actor_role, action, resource_type, '
                           'resource_ids, request_id, client_request_id) ON %I.%I TO %I',
                           p_schema, r.relname, p_app_role);
        ELSIF r.relname = 'security_events' THEN  -- append-only in the same way
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I',
                           p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT INSERT (actor_id, actor_role, method, route, status, error, '
                           'resource_ids, request_id, client_request_id) ON %I.%I TO %I',
                           p_schema, r.relname, p_app_role);
        ELSIF r.relname IN ('audit_events') THEN  -- until tenant migration t0006
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



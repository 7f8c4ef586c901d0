"""Data lifecycle: tenant statuses for offboarding, append-only amendments and tombstones,
and the one privileged path that re-points an erased client's audit trail.

Revision ID: 0007_data_lifecycle
Revises: 0006_audit_insert_columns
Create Date: 2026-12-01

- ``tenants.status`` gains ``closing`` (offboarding has begun: every token is refused)
  and ``erased`` (the practice's data is gone; the row stays for billing).
- ``secure_tenant_schema`` makes ``note_amendments`` and ``erasure_tombstones`` (tenant
  migration ``t0008``) append-only for the app role, like the audit trail.
- ``repoint_erased_records(ids, tombstone)``: the audit and security events that name
  an erased client's record ids name the erasure's tombstone instead. SECURITY DEFINER,
  because the app role may not update audit rows; it acts only in the caller's tenant
  (``app.tenant_id``), only for a tombstone written by the caller's own transaction,
  and only for ids that no record of the tenant has any more, so it cannot rewrite the
  trail of a live record.
"""

from __future__ import annotations

from alembic import op

revision = "0007_data_lifecycle"
down_revision = "0006_audit_insert_columns"
branch_labels = None
depends_on = None

STATUSES_BEFORE = "('active', 'suspended', 'deleted')"
STATUSES = "('active', 'suspended', 'deleted', 'closing', 'erased')"
# The tenant tables whose ids an audit event may name.
RECORD_TABLES = ("clients", "therapy_sessions", "notes", "note_amendments", "conversations",
                 "client_consents", "data_exports")


def _statuses(values: str) -> None:
    op.execute("ALTER TABLE public.tenants DROP CONSTRAINT ck_tenants_status")
    op.execute(f"ALTER TABLE public.tenants ADD CONSTRAINT ck_tenants_status "
               f"CHECK (status IN {values})")


def upgrade() -> None:
    _statuses(STATUSES)
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
        ELSIF r.relname IN ('note_amendments', 'erasure_tombstones') THEN
            -- Append-only: a correction of a record and the trace of an erasure stay as
            -- written (deleted only with their note, by the foreign key's cascade).
            EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I',
                           p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT SELECT, INSERT ON %I.%I TO %I', p_schema, r.relname, p_app_role);
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
    live_checks = "\n".join(
        f"    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.{table} WHERE id = ANY($1))', "
        f"v_schema) INTO v_live USING p_ids;\n"
        f"    IF v_live THEN RAISE EXCEPTION 'a record named is not erased ({table})'; END IF;"
        for table in RECORD_TABLES)
    op.execute(f"""
CREATE FUNCTION public.repoint_erased_records(p_ids uuid[], p_tombstone uuid)
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog AS $$
DECLARE
    v_tenant uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
    v_schema text;
    v_live boolean;
    v_fresh boolean;
    v_audit integer;
    v_security integer;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'no tenant context';
    END IF;
    v_schema := 't_' || replace(v_tenant::text, '-', '');
    -- Only for a tombstone this very transaction wrote.
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.erasure_tombstones WHERE id = $1 '
                   'AND xmin::text::bigint = pg_current_xact_id()::text::bigint %% 4294967296)',
                   v_schema) INTO v_fresh USING p_tombstone;
    IF NOT v_fresh THEN
        RAISE EXCEPTION 'the tombstone was not written by this transaction';
    END IF;
    -- Only for ids that no record of the tenant has any more.
{live_checks}
    EXECUTE format('UPDATE %I.audit_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING p_ids, p_tombstone;
    GET DIAGNOSTICS v_audit = ROW_COUNT;
    EXECUTE format('UPDATE %I.security_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING p_ids, p_tombstone;
    GET DIAGNOSTICS v_security = ROW_COUNT;
    RETURN v_audit + v_security;
END
$$""")
    op.execute("REVOKE ALL ON FUNCTION public.repoint_erased_records(uuid[], uuid) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION public.repoint_erased_records(uuid[], uuid)")
    op.execute("UPDATE public.tenants SET status = 'deleted' "
               "WHERE status IN ('closing', 'erased')")
    _statuses(STATUSES_BEFORE)
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

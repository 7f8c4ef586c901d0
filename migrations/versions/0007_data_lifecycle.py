"""Data lifecycle: tenant statuses for offboarding, append-only amendments, read-only
tombstones, and the trigger that keeps an erased client's audit trail.

Revision ID: 0007_data_lifecycle
Revises: 0006_audit_insert_columns
Create Date: 2026-12-01

- ``tenants.status`` gains ``closing`` (offboarding has begun: every token is refused)
  and ``erased`` (the practice's data is gone; the row stays for billing).
- ``secure_tenant_schema`` makes ``note_amendments`` append-only for the app role, which
  may insert only the columns the application supplies (not the id, the practice or the
  time); ``erasure_tombstones`` are read-only for it. It also puts the trigger below on
  every tenant's ``clients``.
- ``erasure_trail()``: a BEFORE DELETE trigger on ``clients`` (SECURITY DEFINER, owned
  by the owner role). Deleting a client is an erasure: the trigger refuses a delete
  without the erasure's transaction settings (``app.erasure_by``, ``app.erasure_reason``,
  optional ``app.erasure_retain_until``), collects the ids of the client's records
  itself (sessions, notes, amendments, conversations, consents, exports), writes the
  tombstone (when, by whom, why, how many records of each kind; never the client's id)
  and re-points the audit and security events that named any of those ids to the
  tombstone. It hands the tombstone's id and the number of re-pointed events back in
  ``app.erasure_tombstone`` and ``app.erasure_repointed``. The app role cannot choose
  which audit rows change: only the rows of the client it is deleting, in the schema of
  the row; it cannot write a tombstone itself.
- ``enter_tenant`` takes a shared advisory lock on the practice for the transaction
  (``pg_advisory_xact_lock_shared(4711, hashtext(tenant id))``); offboarding takes it
  exclusively before it drops the schema, so no request of the practice is half way
  through its work when its tables disappear.
"""

from __future__ import annotations

from alembic import op

revision = "0007_data_lifecycle"
down_revision = "0006_audit_insert_columns"
branch_labels = None
depends_on = None

STATUSES_BEFORE = "('active', 'suspended', 'deleted')"
STATUSES = "('active', 'suspended', 'deleted', 'closing', 'erased')"


def _statuses(values: str) -> None:
    op.execute("ALTER TABLE public.tenants DROP CONSTRAINT ck_tenants_status")
    op.execute(f"ALTER TABLE public.tenants ADD CONSTRAINT ck_tenants_status "
               f"CHECK (status IN {values})")


def upgrade() -> None:
    _statuses(STATUSES)
    _create_erasure_trail()
    op.execute("""
CREATE OR REPLACE FUNCTION public.enter_tenant(
    p_tenant uuid, p_user text, p_relaxed_commit boolean,
    OUT tenant_status text, OUT member_role text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- The membership read needs only app.tenant_id (for RLS; its names are qualified), so
    -- it runs before search_path changes: PostgreSQL replans a cached query whenever
    -- search_path differs from the one it was planned under, which would otherwise
    -- happen every time a pooled connection moves to another tenant.
    PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
    -- Every transaction of a practice holds this lock shared until it ends; offboarding
    -- takes it exclusively before dropping the schema, so it waits for the practice's
    -- transactions in flight, and those that start later wait, then find it closed.
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(4711, pg_catalog.hashtext(p_tenant::text));
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
        ELSIF r.relname = 'note_amendments' THEN
            -- Append-only, and only the columns the application supplies: a correction
            -- keeps the time the database gave it (§ 630f(1) BGB).
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I',
                           p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT INSERT (note_id, content, reason, author_id) ON %I.%I TO %I',
                           p_schema, r.relname, p_app_role);
        ELSIF r.relname = 'erasure_tombstones' THEN  -- written by erasure_trail() only
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I',
                           p_schema, r.relname, p_app_role);
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', p_schema, r.relname, p_app_role);
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
    -- Deleting a client is an erasure: the trigger keeps its trail (erasure_trail()).
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = p_schema AND c.relname = 'erasure_tombstones')
       AND NOT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = p_schema AND c.relname = 'clients'
                         AND t.tgname = 'erasure_trail') THEN
        EXECUTE format('CREATE TRIGGER erasure_trail BEFORE DELETE ON %I.clients '
                       'FOR EACH ROW EXECUTE FUNCTION public.erasure_trail()', p_schema);
    END IF;
END
$$""")



# The client's records by table, and the ids an audit event may name (the trigger's
# query; %1$I is the tenant schema, $1 the client's id).
_RECORDS = """
SELECT 'therapy_sessions' AS kind, s.id FROM %1$I.therapy_sessions s WHERE s.client_id = $1
UNION ALL SELECT 'notes', n.id FROM %1$I.notes n
  JOIN %1$I.therapy_sessions s ON s.id = n.session_id WHERE s.client_id = $1
UNION ALL SELECT 'note_amendments', a.id FROM %1$I.note_amendments a
  JOIN %1$I.notes n ON n.id = a.note_id
  JOIN %1$I.therapy_sessions s ON s.id = n.session_id WHERE s.client_id = $1
UNION ALL SELECT 'conversations', v.id FROM %1$I.conversations v WHERE v.client_id = $1
UNION ALL SELECT 'client_consents', k.id FROM %1$I.client_consents k WHERE k.client_id = $1
UNION ALL SELECT 'data_exports', e.id FROM %1$I.data_exports e WHERE e.client_id = $1
"""


def _create_erasure_trail() -> None:
    records = _RECORDS.replace("'", "''")
    op.execute(f"""
CREATE FUNCTION public.erasure_trail() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    v_schema text := TG_TABLE_SCHEMA;
    v_by text := NULLIF(current_setting('app.erasure_by', true), '');
    v_reason text := NULLIF(current_setting('app.erasure_reason', true), '');
    v_retain date := NULLIF(current_setting('app.erasure_retain_until', true), '')::date;
    v_ids uuid[];
    v_counts jsonb;
    v_messages bigint;
    v_tombstone uuid;
    v_audit integer;
    v_security integer;
BEGIN
    IF v_by IS NULL OR v_reason IS NULL THEN
        RAISE EXCEPTION 'a client is deleted only by an erasure (app.erasure_by and '
                        'app.erasure_reason are not set)';
    END IF;
    EXECUTE format('WITH r AS ({records}) SELECT '
                   '(SELECT array_agg(id) FROM r), '
                   '(SELECT jsonb_object_agg(kind, n) FROM '
                   '   (SELECT kind, count(*) AS n FROM r GROUP BY kind) c)', v_schema)
        INTO v_ids, v_counts USING OLD.id;
    EXECUTE format('SELECT count(*) FROM %1$I.conversation_messages m '
                   'JOIN %1$I.conversations v ON v.id = m.conversation_id '
                   'WHERE v.client_id = $1', v_schema) INTO v_messages USING OLD.id;
    v_counts := jsonb_build_object(
        'clients', 1, 'therapy_sessions', 0, 'notes', 0, 'note_amendments', 0,
        'conversations', 0, 'client_consents', 0, 'data_exports', 0)
        || coalesce(v_counts, '{{}}'::jsonb)
        || jsonb_build_object('conversation_messages', v_messages);
    v_ids := array_append(coalesce(v_ids, '{{}}'::uuid[]), OLD.id);
    EXECUTE format('INSERT INTO %I.erasure_tombstones (tenant_id, erased_by, reason, '
                   'record_counts, retain_until) VALUES ($1, $2, $3, $4, $5) RETURNING id',
                   v_schema)
        INTO v_tombstone USING OLD.tenant_id, v_by, v_reason, v_counts, v_retain;
    EXECUTE format('UPDATE %I.audit_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING v_ids, v_tombstone;
    GET DIAGNOSTICS v_audit = ROW_COUNT;
    EXECUTE format('UPDATE %I.security_events SET resource_ids = ARRAY(SELECT DISTINCT '
                   'CASE WHEN x = ANY($1) THEN $2 ELSE x END FROM unnest(resource_ids) x) '
                   'WHERE resource_ids && $1', v_schema) USING v_ids, v_tombstone;
    GET DIAGNOSTICS v_security = ROW_COUNT;
    PERFORM set_config('app.erasure_tombstone', v_tombstone::text, true),
            set_config('app.erasure_repointed', (v_audit + v_security)::text, true);
    RETURN OLD;
END
$$""")
    op.execute("REVOKE ALL ON FUNCTION public.erasure_trail() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION public.erasure_trail() CASCADE")  # and its triggers
    op.execute("""
CREATE OR REPLACE FUNCTION public.enter_tenant(
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

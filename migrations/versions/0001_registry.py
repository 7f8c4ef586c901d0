"""Tenant registry, memberships, invitations, tenant-migration status.

Revision ID: 0001_registry
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0001_registry"
down_revision = None
branch_labels = None
depends_on = None

TENANT_SETTING = "(NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid"


def _ts(name: str) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _tenant_col() -> sa.Column[UUID[object]]:
    return sa.Column(
        "tenant_id", UUID(as_uuid=True), nullable=False, server_default=sa.text(TENANT_SETTING)
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", UUID(as_uuid=True), primary_key=True,
                  server_default=sa.text("gen_random_uuid()")),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("schema_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(64), nullable=False, server_default="active"),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint("status IN ('active', 'suspended', 'deleted')", name="status"),
        sa.UniqueConstraint("schema_name"),
        schema="public",
    )
    op.create_table(
        "memberships",
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("public.tenants.id",
                  ondelete="CASCADE"), primary_key=True,
                  server_default=sa.text(TENANT_SETTING)),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("role", sa.String(255), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint("role IN ('admin', 'therapist')", name="role"),
        sa.UniqueConstraint("user_id"),
        schema="public",
    )
    op.create_table(
        "invitations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True,
                  server_default=sa.text("gen_random_uuid()")),
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("public.tenants.id",
                  ondelete="CASCADE"), nullable=False, server_default=sa.text(TENANT_SETTING)),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("role", sa.String(255), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        _ts("created_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        sa.Column("accepted_by", sa.String(255)),
        sa.CheckConstraint("role IN ('admin', 'therapist')", name="role"),
        sa.UniqueConstraint("code_hash"),
        schema="public",
    )
    op.create_table(
        "tenant_migrations",
        sa.Column("tenant_id", UUID(as_uuid=True), sa.ForeignKey("public.tenants.id",
                  ondelete="CASCADE"), primary_key=True),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("revision", sa.String(64)),
        sa.Column("error", sa.Text()),
        sa.Column("duration_ms", sa.Integer()),
        _ts("updated_at"),
        schema="public",
    )

    # Row-level security: a request sees only rows of the tenant in app.tenant_id; a
    # missing setting is NULL, which matches nothing. The platform policy for the owner
    # role (used by SECURITY DEFINER functions and provisioning) is added by
    # `tenancy.security.secure_public`, which knows the deployment's role names.
    for table, column in (("tenants", "id"), ("memberships", "tenant_id"),
                          ("invitations", "tenant_id")):
        op.execute(f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE public.{table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON public.{table} "
            f"USING ({column} = {TENANT_SETTING}) WITH CHECK ({column} = {TENANT_SETTING})"
        )
    op.execute("ALTER TABLE public.tenant_migrations ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE public.tenant_migrations FORCE ROW LEVEL SECURITY")

    # Named cross-tenant paths. Each runs as the owner (SECURITY DEFINER) with a pinned
    # search_path and answers exactly one question.
    op.execute("""
CREATE FUNCTION public.tenant_membership(p_tenant uuid, p_user text)
RETURNS TABLE (tenant_status text, member_role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT t.status::text, m.role::text
    FROM public.tenants t
    LEFT JOIN public.memberships m ON m.tenant_id = t.id AND m.user_id = p_user
    WHERE t.id = p_tenant
$$""")
    op.execute("""
CREATE FUNCTION public.claims_for_user(p_user text)
RETURNS TABLE (tenant_id uuid, member_role text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT m.tenant_id, m.role::text
    FROM public.memberships m JOIN public.tenants t ON t.id = m.tenant_id
    WHERE m.user_id = p_user AND t.status = 'active'
$$""")
    op.execute("""
CREATE FUNCTION public.accept_invitation(p_code_hash text, p_user text)
RETURNS TABLE (outcome text, tenant_id uuid, member_role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    inv public.invitations%ROWTYPE;
    t_status text;
BEGIN
    SELECT * INTO inv FROM public.invitations i WHERE i.code_hash = p_code_hash FOR UPDATE;
    IF NOT FOUND OR inv.accepted_at IS NOT NULL THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    IF inv.expires_at <= now() THEN
        RETURN QUERY SELECT 'expired'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    SELECT t.status INTO t_status FROM public.tenants t WHERE t.id = inv.tenant_id;
    IF t_status IS DISTINCT FROM 'active' THEN
        RETURN QUERY SELECT 'tenant_inactive'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM public.memberships m WHERE m.user_id = p_user) THEN
        RETURN QUERY SELECT 'already_member'::text, NULL::uuid, NULL::text; RETURN;
    END IF;
    INSERT INTO public.memberships (tenant_id, user_id, role)
        VALUES (inv.tenant_id, p_user, inv.role);
    UPDATE public.invitations SET accepted_at = now(), accepted_by = p_user
        WHERE id = inv.id;
    RETURN QUERY SELECT 'accepted'::text, inv.tenant_id, inv.role::text;
END
$$""")
    for fn in ("tenant_membership(uuid, text)", "claims_for_user(text)",
               "accept_invitation(text, text)"):
        op.execute(f"REVOKE ALL ON FUNCTION public.{fn} FROM PUBLIC")

    # Applied by the tenant-migration runner and by provisioning after every change to a
    # tenant schema: every table gets RLS forced with the tenant policy, a CHECK pinning
    # tenant_id to the schema's tenant (a row of tenant B can never land in A's schema,
    # even under B's context), and DML grants for the app role -- only SELECT/INSERT on
    # append-only tables. Not callable by the app role.
    op.execute("""
CREATE FUNCTION public.secure_tenant_schema(p_schema name, p_tenant uuid, p_app_role name)
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
    op.execute("REVOKE ALL ON FUNCTION public.secure_tenant_schema(name, uuid, name) FROM PUBLIC")



def downgrade() -> None:
    for fn in ("tenant_membership(uuid, text)", "claims_for_user(text)",
               "accept_invitation(text, text)", "secure_tenant_schema(name, uuid, name)"):
        op.execute(f"DROP FUNCTION public.{fn}")
    for table in ("tenant_migrations", "invitations", "memberships", "tenants"):
        op.drop_table(table, schema="public")

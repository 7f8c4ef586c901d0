"""Grants, row-level security and the app role's start-up safety check.

Both are idempotent and run after every migration, so a table added by a later
migration gets the same protection as the first ones, without each migration
having to remember it.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import Connection, Engine, text

from tenancy.errors import UnsafeDatabaseRole

TENANT_SCHEMA_RE = re.compile(r"^t_[0-9a-f]{32}$")
# Tenant-scoped tables of the public schema (table -> column holding the tenant id).
PUBLIC_TENANT_TABLES = {"tenants": "id", "memberships": "tenant_id", "invitations": "tenant_id",
                        "llm_budgets": "tenant_id", "llm_usage": "tenant_id"}
PUBLIC_APP_GRANTS = {
    "tenants": "SELECT",
    "memberships": "SELECT, INSERT, UPDATE, DELETE",
    "invitations": "SELECT, INSERT, UPDATE, DELETE",
    "llm_budgets": "SELECT, INSERT, UPDATE",
    "llm_usage": "SELECT, INSERT",  # append-only ledger
    "billing_periods": "SELECT",  # which months are closed (no practice data)
}
PUBLIC_APP_FUNCTIONS = (
    "enter_tenant(uuid, text, boolean)",
    "claims_for_user(text)",
    "accept_invitation(text, text, text[])",
    # The billing team's cross-tenant summary (migrations 0009, 0010); the route checks
    # the caller is a billing principal before calling it.
    "billing_usage_summary(text)",
)


def schema_name(tenant_id: uuid.UUID) -> str:
    """Name a tenant's schema from its id, never from user input."""
    return f"t_{tenant_id.hex}"


def tenant_id_of(schema: str) -> uuid.UUID:
    if not TENANT_SCHEMA_RE.match(schema):
        raise ValueError("not a tenant schema name")
    return uuid.UUID(schema[2:])


def secure_public(conn: Connection, *, owner_role: str, app_role: str) -> None:
    """Grant the app role what it needs in ``public`` and the owner its platform policy."""
    for table, privileges in PUBLIC_APP_GRANTS.items():
        conn.execute(text(f'GRANT {privileges} ON public.{table} TO "{app_role}"'))
    for table in PUBLIC_TENANT_TABLES:
        conn.execute(text(f"DROP POLICY IF EXISTS platform_access ON public.{table}"))
        conn.execute(text(
            f'CREATE POLICY platform_access ON public.{table} TO "{owner_role}" '
            "USING (true) WITH CHECK (true)"
        ))
    conn.execute(text("DROP POLICY IF EXISTS platform_access ON public.tenant_migrations"))
    conn.execute(text(
        f'CREATE POLICY platform_access ON public.tenant_migrations TO "{owner_role}" '
        "USING (true) WITH CHECK (true)"
    ))
    for fn in PUBLIC_APP_FUNCTIONS:
        conn.execute(text(f'GRANT EXECUTE ON FUNCTION public.{fn} TO "{app_role}"'))


def secure_tenant_schema(conn: Connection, schema: str, *, app_role: str) -> None:
    """Pin, force RLS on, and grant every table of one tenant schema (one round trip).

    See ``public.secure_tenant_schema`` in ``migrations/versions/0001_registry.py``.
    """
    conn.execute(
        text("SELECT public.secure_tenant_schema(:schema, :tenant, :app_role)"),
        {"schema": schema, "tenant": tenant_id_of(schema), "app_role": app_role},
    )


def verify_app_role(engine: Engine) -> None:
    """Refuse to serve if the app role could see across tenants.

    Checked: the role is not superuser, has no BYPASSRLS, neither owns nor is a member
    of a role that owns a table in a tenant schema or public (membership in the owner
    role would inherit its platform policies), and every tenant table forces RLS.
    """
    with engine.connect() as conn:
        row = conn.execute(text("""
SELECT r.rolname, r.rolsuper, r.rolbypassrls,
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE pg_has_role(r.oid, c.relowner, 'MEMBER') AND c.relkind IN ('r', 'p')
      AND (n.nspname = 'public' OR n.nspname ~ '^t_[0-9a-f]{32}$')) AS owned,
  (SELECT array_agg(n.nspname || '.' || c.relname ORDER BY 1) FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
      AND ((n.nspname ~ '^t_[0-9a-f]{32}$' AND c.relname <> 'alembic_version')
           OR (n.nspname = 'public' AND c.relname = ANY(:public_tables)))) AS unforced
FROM pg_roles r WHERE r.rolname = current_user
"""), {"public_tables": list(PUBLIC_TENANT_TABLES)}).one()
    problems = []
    if row.rolsuper:
        problems.append("is a superuser")
    if row.rolbypassrls:
        problems.append("has BYPASSRLS")
    if row.owned:
        problems.append(f"owns (or is a member of a role owning) {row.owned} table(s)")
    if row.unforced:
        problems.append(f"{len(row.unforced)} tenant table(s) lack FORCE ROW LEVEL SECURITY")
    if problems:
        raise UnsafeDatabaseRole(
            f"database role {row.rolname!r} " + "; ".join(problems) + ": refusing to serve"
        )

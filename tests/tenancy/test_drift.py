"""Provisioning (create_all + stamp) and the migration history build the same schema.

``tenancy.provisioning.create_tenant`` builds a new tenant's schema from the models
at head instead of replaying the tenant migrations; this compares such a schema,
catalog entry by catalog entry, with one built by running the migrations from base.
"""

from __future__ import annotations

import difflib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from tenancy.migrate import upgrade_tenants
from tenancy.provisioning import create_tenant, tenant_head
from tenancy.security import schema_name
from tests.conftest import APP_ROLE, db_config


@pytest.fixture
def own_tenants(admin_conn: psycopg.Connection[Any]) -> Iterator[list[uuid.UUID]]:
    ids: list[uuid.UUID] = []
    yield ids
    for tenant_id in ids:
        admin_conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name(tenant_id)}" CASCADE')
    admin_conn.execute("DELETE FROM public.tenants WHERE id = ANY(%s)", (ids,))


def snapshot(admin: psycopg.Connection[Any], tenant_id: uuid.UUID) -> dict[str, Any]:
    """Describe one tenant schema with the tenant's id and schema name normalized."""
    schema = schema_name(tenant_id)

    def rows(sql: str, *params: Any) -> list[list[Any]]:
        return sorted([list(r) for r in admin.execute(sql, (schema, *params))], key=repr)

    described: dict[str, Any] = {
        "schema": rows("""
SELECT pg_get_userbyid(n.nspowner), array(SELECT a::text FROM unnest(n.nspacl) a ORDER BY 1)
FROM pg_namespace n WHERE n.nspname = %s"""),
        "tables": rows("""
SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relrowsecurity,
       c.relforcerowsecurity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"""),
        "columns": rows("""
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, a.attnum
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"""),
        "constraints": rows("""
SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.condeferrable
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s"""),
        "indexes": rows(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s"),
        "policies": rows("""
SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check
FROM pg_policies WHERE schemaname = %s"""),
        "grants": rows("""
SELECT c.relname, coalesce(pg_get_userbyid(g.grantee), 'PUBLIC'),
       pg_get_userbyid(g.grantor), g.privilege_type, g.is_grantable
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(c.relacl) g
WHERE n.nspname = %s"""),
        "app_role_privileges": _app_privileges(admin, schema),
        "sequences": rows("""
SELECT sequencename, pg_get_userbyid(c.relowner), data_type::text, start_value,
       increment_by, cycle
FROM pg_sequences s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relname = s.sequencename AND c.relnamespace = n.oid
WHERE s.schemaname = %s"""),
        "triggers": rows("""
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND NOT t.tgisinternal"""),
    }
    text = json.dumps(described, indent=1, default=str, sort_keys=True)
    for token in (schema, str(tenant_id), tenant_id.hex):
        text = text.replace(token, "<tenant>")
    normalized: dict[str, Any] = json.loads(text)
    return normalized


def _app_privileges(admin: psycopg.Connection[Any], schema: str) -> list[list[Any]]:
    return sorted([list(r) for r in admin.execute("""
SELECT c.relname, p.priv, has_table_privilege(%s, c.oid, p.priv)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                        'TRIGGER']) AS p(priv)
WHERE n.nspname = %s AND c.relkind = 'r'""", (APP_ROLE, schema))], key=repr)


def diff(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> str:
    return "\n".join(difflib.unified_diff(
        json.dumps(a, indent=1, sort_keys=True).splitlines(),
        json.dumps(b, indent=1, sort_keys=True).splitlines(),
        fromfile=a_name, tofile=b_name, lineterm=""))


def test_provisioned_schema_equals_migrated_schema(
    database_url: str, owner_engine: Engine, own_tenants: list[uuid.UUID],
    admin_conn: psycopg.Connection[Any],
) -> None:
    provisioned = create_tenant(owner_engine, name="Praxis provisioned",
                                admin_user_id=f"drift-{uuid.uuid4()}", app_role=APP_ROLE)
    own_tenants.append(provisioned.id)
    migrated = create_tenant(owner_engine, name="Praxis migrated",
                             admin_user_id=f"drift-{uuid.uuid4()}", app_role=APP_ROLE)
    own_tenants.append(migrated.id)

    # Empty the second schema (tables and Alembic version) and migrate it from base.
    schema = migrated.schema_name
    for (table,) in admin_conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                       (schema,)).fetchall():
        admin_conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE')
    assert admin_conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                              "ON n.oid = c.relnamespace WHERE n.nspname = %s",
                              (schema,)).fetchone() == (0,)
    report = upgrade_tenants(db_config(database_url), tenant_ids=[migrated.id])
    assert [(o.status, o.from_revision, o.to_revision) for o in report.outcomes] == [
        ("migrated", None, tenant_head())], report.outcomes
    assert admin_conn.execute(f'SELECT version_num FROM "{schema}".alembic_version'
                              ).fetchall() == [(tenant_head(),)]

    expected = snapshot(admin_conn, provisioned.id)
    actual = snapshot(admin_conn, migrated.id)
    assert expected["tables"], "the provisioned schema has no tables"
    assert {t[0] for t in expected["tables"]} >= {"clients", "therapy_sessions", "notes",
                                                   "audit_events", "alembic_version"}
    differences = {k for k in expected if expected[k] != actual[k]}
    assert not differences, (
        f"provisioned and migrated schemas differ in {sorted(differences)}:\n"
        + diff(expected, actual, "create_tenant (create_all + stamp)", "migrations from base"))

"""The app role's start-up safety check, and the two walls between tenants.

``verify_app_role`` must refuse any role that could see across tenants. The walls
are the schema (``search_path``) and row-level security (``app.tenant_id``): each must
hold on its own, when the other one points at a different tenant.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from psycopg import errors
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from api import create_app
from tenancy.database import create_app_engine, create_owner_engine, sqlalchemy_url
from tenancy.errors import UnsafeDatabaseRole
from tenancy.provisioning import create_tenant
from tenancy.security import schema_name, verify_app_role
from tests.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE, RUN_ID, app_config, db_config
from tests.oidc import LocalIssuer

TEMP_PASSWORD = "clinai-test-temp-role-password"


def role_url(database_url: str, role: str, password: str) -> str:
    return make_url(database_url).set(username=role, password=password).render_as_string(
        hide_password=False)


def conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def engine_for(database_url: str) -> Iterator[Callable[[str], Engine]]:
    """Return a factory of unpooled engines for a URL; all are disposed afterwards."""
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def app_engine(app: Flask, database_url: str) -> Iterator[Engine]:
    engine = create_app_engine(db_config(database_url), pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture
def temp_role(app: Flask, database_url: str,
              admin_conn: psycopg.Connection[Any]) -> Iterator[Callable[..., str]]:
    """Return a factory of LOGIN roles (extra attributes as SQL); return their URL.

    The roles are dropped afterwards; anything they still own goes back to the owner
    role first, so a forgotten restore can't drop a tenant's table.
    """
    roles: list[str] = []
    database = make_url(database_url).database

    def make(attributes: str = "") -> str:
        role = f"clinai_t{RUN_ID}_tmp_{secrets.token_hex(3)}"
        admin_conn.execute(
            f"CREATE ROLE \"{role}\" LOGIN NOSUPERUSER {attributes} PASSWORD '{TEMP_PASSWORD}'")
        roles.append(role)
        admin_conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        admin_conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        return role

    yield make
    for role in roles:
        admin_conn.execute(f'REASSIGN OWNED BY "{role}" TO "{OWNER_ROLE}"')
        admin_conn.execute(f'DROP OWNED BY "{role}"')
        admin_conn.execute(f'DROP ROLE "{role}"')


@pytest.fixture
def tenant(app: Flask, database_url: str,
           admin_conn: psycopg.Connection[Any]) -> Iterator[uuid.UUID]:
    """A tenant of this test alone (its tables are altered and restored)."""
    engine = create_owner_engine(db_config(database_url), poolclass=NullPool)
    try:
        record = create_tenant(engine, name="Praxis Safety",
                               admin_user_id=f"safety-{uuid.uuid4()}", app_role=APP_ROLE)
    finally:
        engine.dispose()
    yield record.id
    admin_conn.execute(f'DROP SCHEMA IF EXISTS "{record.schema_name}" CASCADE')
    admin_conn.execute("DELETE FROM public.tenants WHERE id = %s", (record.id,))


# -- verify_app_role ------------------------------------------------------------------


def test_normal_app_role_passes(app_engine: Engine) -> None:
    verify_app_role(app_engine)


def test_superuser_is_refused(app: Flask, database_url: str,
                              engine_for: Callable[[str], Engine]) -> None:
    with pytest.raises(UnsafeDatabaseRole, match="is a superuser") as raised:
        verify_app_role(engine_for(database_url))
    assert raised.value.code == "unsafe_database_role"


def test_bypassrls_role_is_refused(database_url: str, temp_role: Callable[..., str],
                                   engine_for: Callable[[str], Engine]) -> None:
    role = temp_role("BYPASSRLS")
    with pytest.raises(UnsafeDatabaseRole, match="has BYPASSRLS") as raised:
        verify_app_role(engine_for(role_url(database_url, role, TEMP_PASSWORD)))
    assert "superuser" not in str(raised.value)
    assert role in str(raised.value)


def test_role_owning_a_tenant_table_is_refused(
    database_url: str, tenant: uuid.UUID, temp_role: Callable[..., str],
    engine_for: Callable[[str], Engine], admin_conn: psycopg.Connection[Any],
    app_engine: Engine,
) -> None:
    role = temp_role()
    table = f'"{schema_name(tenant)}".clients'
    engine = engine_for(role_url(database_url, role, TEMP_PASSWORD))
    verify_app_role(engine)  # owning nothing, the temporary role is as safe as the app's
    before = admin_conn.execute("SELECT relowner, relacl::text FROM pg_class "
                                "WHERE oid = %s::regclass", (table,)).fetchone()
    admin_conn.execute(f'ALTER TABLE {table} OWNER TO "{role}"')
    try:
        with pytest.raises(UnsafeDatabaseRole,
                           match=r"owns \(or is a member of a role owning\) 1 table\(s\)"):
            verify_app_role(engine)
    finally:
        admin_conn.execute(f'ALTER TABLE {table} OWNER TO "{OWNER_ROLE}"')
    after = admin_conn.execute("SELECT relowner, relacl::text FROM pg_class "
                               "WHERE oid = %s::regclass", (table,)).fetchone()
    assert after == before
    verify_app_role(engine)
    verify_app_role(app_engine)


@pytest.mark.parametrize("change, restore", [
    ("NO FORCE ROW LEVEL SECURITY", "FORCE ROW LEVEL SECURITY"),
    ("DISABLE ROW LEVEL SECURITY", "ENABLE ROW LEVEL SECURITY"),
])
def test_tenant_table_without_forced_rls_is_refused(
    change: str, restore: str, tenant: uuid.UUID, app_engine: Engine,
    admin_conn: psycopg.Connection[Any],
) -> None:
    table = f'"{schema_name(tenant)}".notes'
    admin_conn.execute(f"ALTER TABLE {table} {change}")
    try:
        with pytest.raises(UnsafeDatabaseRole,
                           match=r"1 tenant table\(s\) lack FORCE ROW LEVEL SECURITY"):
            verify_app_role(app_engine)
    finally:
        admin_conn.execute(f"ALTER TABLE {table} {restore}")
    assert admin_conn.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                              "WHERE oid = %s::regclass", (table,)).fetchone() == (True, True)
    verify_app_role(app_engine)


def test_member_of_the_owner_role_is_refused(
    database_url: str, temp_role: Callable[..., str], engine_for: Callable[[str], Engine],
    admin_conn: psycopg.Connection[Any], make_practice: Callable[..., Any],
) -> None:
    a, b = make_practice("Praxis A"), make_practice("Praxis B")
    role = temp_role()
    admin_conn.execute(f'GRANT "{OWNER_ROLE}" TO "{role}"')
    url = role_url(database_url, role, TEMP_PASSWORD)
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(a.id),))
        seen = {r[0] for r in conn.execute("SELECT id FROM public.tenants")}
    # The role, acting in tenant A, reads other tenants' registry rows.
    assert {a.id, b.id} <= seen
    with pytest.raises(UnsafeDatabaseRole):
        verify_app_role(engine_for(url))


def test_app_with_unsafe_role_refuses_tenant_requests(
    database_url: str, issuer: LocalIssuer, temp_role: Callable[..., str],
    make_practice: Callable[..., Any],
) -> None:
    practice = make_practice()
    role = temp_role("BYPASSRLS")
    unsafe = create_app(app_config(database_url, issuer,
                                   DATABASE_APP_URL=role_url(database_url, role, TEMP_PASSWORD)))
    try:
        client = unsafe.test_client()
        for _ in range(2):  # not cached as verified after a failure
            response = client.get("/api/v1/clients", headers=practice.admin.headers)
            assert response.status_code == 503, response.json
            assert response.json["error"] == "unsafe_database_role"
        created = client.post("/api/v1/clients", headers=practice.admin.headers,
                              json={"first_name": "Not", "last_name": "Stored"})
        assert created.status_code == 503
    finally:
        unsafe.extensions["clinai_db"].dispose()
    # The same practice works through the safe app.
    listed = practice.client.get("/api/v1/clients", headers=practice.admin.headers)
    assert listed.status_code == 200
    assert all(c["last_name"] != "Stored" for c in listed.json)


# -- the two walls ------------------------------------------------------------------


@pytest.fixture
def practices(make_practice: Callable[..., Any]) -> tuple[Any, Any]:
    a, b = make_practice("Praxis A"), make_practice("Praxis B")
    a.create_client(first_name="Anna", last_name="A-one")
    a.create_client(first_name="Anton", last_name="A-two")
    b.create_client(first_name="Berta", last_name="B-one")
    return a, b


def enter(conn: psycopg.Connection[Any], search_path: str | None,
          tenant_id: uuid.UUID | None) -> None:
    """Set either wall (or both) for the current transaction."""
    if search_path is not None:
        conn.execute("SELECT set_config('search_path', %s, true)", (search_path,))
    if tenant_id is not None:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))


def count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_own_context_sees_own_rows(practices: tuple[Any, Any],
                                   app_role_conn: psycopg.Connection[Any]) -> None:
    a, _ = practices
    enter(app_role_conn, f"{schema_name(a.id)}, public", a.id)
    assert count(app_role_conn, "clients") == 2
    app_role_conn.rollback()


def test_schema_a_with_tenant_b_sees_and_writes_nothing(
    practices: tuple[Any, Any], app_role_conn: psycopg.Connection[Any],
    admin_conn: psycopg.Connection[Any],
) -> None:
    a, b = practices
    conn = app_role_conn
    enter(conn, f"{schema_name(a.id)}, public", b.id)
    assert count(conn, "clients") == 0
    assert conn.execute("UPDATE clients SET last_name = 'x'").rowcount == 0
    assert conn.execute("DELETE FROM clients").rowcount == 0
    conn.rollback()

    # A row under B's setting is pinned out of A's schema...
    enter(conn, f"{schema_name(a.id)}, public", b.id)
    with pytest.raises(errors.CheckViolation, match="tenant_pin"):
        conn.execute("INSERT INTO clients (first_name, last_name) VALUES ('Eve', 'Intruder')")
    conn.rollback()
    # ...and a row claiming A's id is refused by row-level security.
    enter(conn, f"{schema_name(a.id)}, public", b.id)
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        conn.execute("INSERT INTO clients (tenant_id, first_name, last_name) "
                     "VALUES (%s, 'Eve', 'Intruder')", (a.id,))
    conn.rollback()
    assert admin_conn.execute(
        f'SELECT count(*), count(*) FILTER (WHERE last_name = \'x\') FROM "{schema_name(a.id)}"'
        ".clients").fetchone() == (2, 0)


def test_schema_b_with_tenant_a_sees_nothing_of_either(
    practices: tuple[Any, Any], app_role_conn: psycopg.Connection[Any],
) -> None:
    a, b = practices
    conn = app_role_conn
    enter(conn, f"{schema_name(b.id)}, public", a.id)
    assert count(conn, "clients") == 0  # B's rows are not A's; A's rows are not here
    assert count(conn, f"clients WHERE tenant_id = '{a.id}'") == 0
    with pytest.raises(errors.CheckViolation, match="tenant_pin"):
        conn.execute("INSERT INTO clients (first_name, last_name) VALUES ('Eve', 'Intruder')")
    conn.rollback()


def test_schema_qualified_read_of_another_tenant_sees_nothing(
    practices: tuple[Any, Any], app_role_conn: psycopg.Connection[Any],
) -> None:
    a, b = practices
    conn = app_role_conn
    enter(conn, f"{schema_name(b.id)}, public", b.id)
    assert count(conn, "clients") == 1
    assert count(conn, f'"{schema_name(a.id)}".clients') == 0
    assert count(conn, f'"{schema_name(a.id)}".audit_events') == 0
    assert conn.execute(
        f'UPDATE "{schema_name(a.id)}".clients SET last_name = \'x\'').rowcount == 0
    assert conn.execute(f'DELETE FROM "{schema_name(a.id)}".clients').rowcount == 0
    conn.rollback()


def _no_context_fails_closed(conn: psycopg.Connection[Any], a_schema: str) -> None:
    for table in ("clients", "therapy_sessions", "notes", "audit_events"):
        assert count(conn, f'"{a_schema}".{table}') == 0, table
    conn.rollback()
    with pytest.raises((errors.InsufficientPrivilege, errors.NotNullViolation)):
        conn.execute(f'INSERT INTO "{a_schema}".clients (first_name, last_name) '
                     "VALUES ('Eve', 'Intruder')")
    conn.rollback()
    with pytest.raises((errors.InsufficientPrivilege, errors.NotNullViolation)):
        conn.execute(f'INSERT INTO "{a_schema}".audit_events (actor_id, actor_role, action, '
                     "resource_type, resource_ids) VALUES ('x', 'admin', 'read', 'client', "
                     "'{}')")
    conn.rollback()


def test_no_tenant_context_on_a_fresh_connection_fails_closed(
    practices: tuple[Any, Any], database_url: str,
) -> None:
    a, _ = practices
    url = role_url(database_url, APP_ROLE, APP_PASSWORD)
    with psycopg.connect(conninfo(url)) as conn:
        assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone() == (
            None,)
        _no_context_fails_closed(conn, schema_name(a.id))


def test_no_tenant_context_after_a_tenant_transaction_fails_closed(
    practices: tuple[Any, Any], app_role_conn: psycopg.Connection[Any],
) -> None:
    """A pooled connection keeps an empty app.tenant_id after a tenant transaction."""
    a, _ = practices
    conn = app_role_conn
    enter(conn, f"{schema_name(a.id)}, public", a.id)
    assert count(conn, "clients") == 2
    conn.commit()
    assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone() == ("",)
    _no_context_fails_closed(conn, schema_name(a.id))


def test_audit_events_are_append_only_for_the_app_role(
    practices: tuple[Any, Any], app_role_conn: psycopg.Connection[Any],
) -> None:
    a, _ = practices
    conn = app_role_conn
    enter(conn, f"{schema_name(a.id)}, public", a.id)
    assert count(conn, "audit_events") >= 2  # the two client creations
    conn.rollback()
    for statement in ("UPDATE audit_events SET action = 'tampered'",
                      "DELETE FROM audit_events",
                      "TRUNCATE audit_events"):
        enter(conn, f"{schema_name(a.id)}, public", a.id)
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)
        conn.rollback()


@pytest.mark.parametrize("statement", [
    "CREATE SCHEMA intruder",
    'CREATE TABLE "{schema}".intruder (x int)',
    "CREATE TABLE public.intruder (x int)",
    'ALTER TABLE "{schema}".clients NO FORCE ROW LEVEL SECURITY',
    'DROP POLICY tenant_isolation ON "{schema}".clients',
])
def test_app_role_cannot_change_the_schema(
    statement: str, practices: tuple[Any, Any], app_role_conn: psycopg.Connection[Any],
) -> None:
    a, _ = practices
    conn = app_role_conn
    enter(conn, f"{schema_name(a.id)}, public", a.id)
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement.format(schema=schema_name(a.id)))
    conn.rollback()

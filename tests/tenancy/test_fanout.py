"""Migration fan-out over many tenant schemas: parallel upgrade, one failure, resume.

Other tests share the database, so everything here works on tenants this module
creates: upgrades are restricted to them with ``tenant_ids`` and they are removed at
the end. The extra revision exists only in ``tmp_path`` and is only seen when it is
passed as an extra version location.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tenancy import migrate
from tenancy.database import create_app_engine
from tenancy.migrate import tenant_versions, upgrade_tenants
from tenancy.provisioning import create_tenant, tenant_head
from tenancy.security import schema_name, verify_app_role
from tests.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE, db_config

ROOT = Path(__file__).resolve().parents[2]
TENANTS = 50
FORK_TIMEOUT = 8
BASE_HEAD = tenant_head()  # t0001_clinical; the extra revision goes on top of it
COUNTER = "test_migration_runs"
COLUMN = "fanout_tag"

REVISION_FILE = '''\
"""Test-only tenant revision: a column and an index on clients, a run counter, and a
failure switch (the table ``fail_here`` in the schema being migrated)."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("clients", sa.Column("{column}", sa.String(64)))
    op.create_index("ix_clients_{column}", "clients", ["{column}"])
    bind = op.get_bind()
    bind.execute(sa.text(
        "INSERT INTO public.{counter} (schema, at) VALUES (current_schema(), now())"
    ))
    marker = bind.scalar(sa.text(
        "SELECT to_regclass(quote_ident(current_schema()) || '.fail_here')"
    ))
    if marker is not None:
        raise RuntimeError("fail_here marker present in " + bind.scalar(
            sa.text("SELECT current_schema()")))


def downgrade():
    op.drop_index("ix_clients_{column}", "clients")
    op.drop_column("clients", "{column}")
'''


def write_revision(directory: Path) -> str:
    """Write the extra tenant revision into ``directory``; return its revision id."""
    revision = f"t9_fanout_{uuid.uuid4().hex[:12]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{revision}.py").write_text(REVISION_FILE.format(
        revision=revision, down_revision=BASE_HEAD, column=COLUMN, counter=COUNTER))
    return revision


def drop_tenants(admin: psycopg.Connection[Any], ids: list[uuid.UUID]) -> None:
    for tenant_id in ids:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema_name(tenant_id)}" CASCADE')
    admin.execute("DELETE FROM public.tenants WHERE id = ANY(%s)", (ids,))


def reset_to_base(admin: psycopg.Connection[Any], tenant_id: uuid.UUID) -> None:
    """Empty a tenant's schema (tables and Alembic version), as if never migrated."""
    schema = schema_name(tenant_id)
    tables = [r[0] for r in admin.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
    for table in tables:
        admin.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE')


def columns_of(admin: psycopg.Connection[Any], schema: str, table: str) -> set[str]:
    return {r[0] for r in admin.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s", (schema, table))}


def version_of(admin: psycopg.Connection[Any], schema: str) -> str | None:
    row = admin.execute(f'SELECT version_num FROM "{schema}".alembic_version').fetchone()
    return row[0] if row else None


def index_exists(admin: psycopg.Connection[Any], schema: str, name: str) -> bool:
    return admin.execute("SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                         (schema, name)).fetchone() is not None


@pytest.fixture
def fresh_worker_engines() -> Iterator[None]:
    """Drop the migration runner's per-process engine cache around a forking fan-out.

    Work around the bug shown by ``test_forked_workers_do_not_share_the_parents_connection``:
    after an in-process tenant migration (``jobs=1``, or a run with one tenant to do),
    forked workers inherit the cached engine's open connection and share its socket.
    """
    def clear() -> None:
        for engine in migrate._worker_engines.values():
            engine.dispose()
        migrate._worker_engines.clear()

    clear()
    yield
    clear()


@pytest.fixture
def own_tenants(admin_conn: psycopg.Connection[Any]) -> Iterator[list[uuid.UUID]]:
    """Ids of tenants a test creates; their schemas and registry rows are removed after."""
    ids: list[uuid.UUID] = []
    yield ids
    if ids:
        drop_tenants(admin_conn, ids)


@pytest.fixture
def counter(app: Flask, admin_conn: psycopg.Connection[Any]) -> Iterator[str]:
    admin_conn.execute(f"DROP TABLE IF EXISTS public.{COUNTER}")
    # pid: the backend that ran the migration (see the forked-workers test below).
    admin_conn.execute(f"CREATE TABLE public.{COUNTER} (schema text NOT NULL, "
                       "at timestamptz NOT NULL, pid int NOT NULL DEFAULT pg_backend_pid())")
    admin_conn.execute(f'GRANT INSERT, SELECT ON public.{COUNTER} TO "{OWNER_ROLE}"')
    yield COUNTER
    admin_conn.execute(f"DROP TABLE IF EXISTS public.{COUNTER}")


def new_tenant(owner_engine: Engine, own: list[uuid.UUID], label: str) -> uuid.UUID:
    record = create_tenant(owner_engine, name=f"Praxis {label}",
                           admin_user_id=f"{label}-{uuid.uuid4()}", app_role=APP_ROLE)
    own.append(record.id)
    return record.id


@pytest.mark.slow
def test_fanout_fails_one_tenant_and_resumes_it(
    database_url: str, owner_engine: Engine, own_tenants: list[uuid.UUID],
    admin_conn: psycopg.Connection[Any], counter: str, tmp_path: Path,
    fresh_worker_engines: None,
) -> None:
    config = db_config(database_url)
    revision = write_revision(tmp_path / "versions")
    extra = [tmp_path / "versions"]

    bystander = new_tenant(owner_engine, own_tenants, "bystander")
    ids = [new_tenant(owner_engine, own_tenants, f"fanout{i}") for i in range(TENANTS)]
    schemas = {t: schema_name(t) for t in ids}
    doomed = ids[17]
    admin_conn.execute(f'CREATE TABLE "{schemas[doomed]}".fail_here (x int)')
    with owner_engine.connect() as conn:
        before = {t: v for t, v in tenant_versions(conn).items() if t not in set(ids)}
    assert before[bystander] == BASE_HEAD

    # First run: one tenant fails, the others are migrated, each in its own transaction.
    started = time.perf_counter()
    first = upgrade_tenants(config, jobs=2, tenant_ids=ids, extra_version_locations=extra)
    print(f"fan-out over {TENANTS} tenants, jobs=2: {time.perf_counter() - started:.2f} s")
    assert first.head == revision
    assert (first.total, first.at_head, len(first.outcomes)) == (TENANTS, 0, TENANTS)
    migrated = [o for o in first.outcomes if o.status == "migrated"]
    assert len(migrated) == TENANTS - 1
    assert [o.tenant_id for o in first.failed] == [doomed]
    failure = first.failed[0]
    assert failure.error and "fail_here" in failure.error, failure.error
    assert (failure.from_revision, failure.to_revision) == (BASE_HEAD, None)
    assert all((o.from_revision, o.to_revision) == (BASE_HEAD, revision) for o in migrated)

    status = dict(admin_conn.execute(
        "SELECT tenant_id, status FROM public.tenant_migrations WHERE tenant_id = ANY(%s)",
        (ids,)).fetchall())
    assert status[doomed] == "failed"
    assert {t for t, s in status.items() if s == "migrated"} == set(ids) - {doomed}
    error = admin_conn.execute("SELECT error, revision FROM public.tenant_migrations "
                               "WHERE tenant_id = %s", (doomed,)).fetchone()
    assert error is not None and "fail_here" in error[0]
    assert error[1] == BASE_HEAD

    # The failed tenant's transaction rolled back: no column, no index, no counter row,
    # and its version is unchanged.
    assert COLUMN not in columns_of(admin_conn, schemas[doomed], "clients")
    assert not index_exists(admin_conn, schemas[doomed], f"ix_clients_{COLUMN}")
    assert version_of(admin_conn, schemas[doomed]) == BASE_HEAD
    for t in set(ids) - {doomed}:
        assert COLUMN in columns_of(admin_conn, schemas[t], "clients")
        assert index_exists(admin_conn, schemas[t], f"ix_clients_{COLUMN}")
        assert version_of(admin_conn, schemas[t]) == revision
    runs = admin_conn.execute(f"SELECT schema FROM public.{counter}").fetchall()
    assert len(runs) == TENANTS - 1
    assert {r[0] for r in runs} == {schemas[t] for t in ids if t != doomed}

    # Rerun after removing the cause: only the failed tenant is touched.
    admin_conn.execute(f'DROP TABLE "{schemas[doomed]}".fail_here')
    second = upgrade_tenants(config, jobs=2, tenant_ids=ids, extra_version_locations=extra)
    assert (second.total, second.at_head) == (TENANTS, TENANTS - 1)
    assert [(o.tenant_id, o.status, o.from_revision, o.to_revision)
            for o in second.outcomes] == [(doomed, "migrated", BASE_HEAD, revision)]
    assert COLUMN in columns_of(admin_conn, schemas[doomed], "clients")
    assert version_of(admin_conn, schemas[doomed]) == revision
    per_schema = dict(admin_conn.execute(
        f"SELECT schema, count(*) FROM public.{counter} GROUP BY schema").fetchall())
    assert per_schema == {s: 1 for s in schemas.values()}
    assert admin_conn.execute(
        "SELECT count(*) FROM public.tenant_migrations WHERE tenant_id = ANY(%s) "
        "AND status = 'migrated' AND revision = %s AND error IS NULL",
        (ids, revision)).fetchone() == (TENANTS,)

    # Third run: nothing to do.
    third = upgrade_tenants(config, jobs=2, tenant_ids=ids, extra_version_locations=extra)
    assert (third.total, third.at_head, third.outcomes) == (TENANTS, TENANTS, [])
    assert admin_conn.execute(f"SELECT count(*) FROM public.{counter}").fetchone() == (TENANTS,)

    # Tenants outside the selection were not touched.
    with owner_engine.connect() as conn:
        after = {t: v for t, v in tenant_versions(conn).items() if t not in set(ids)}
    assert after == before
    for t in after:
        assert COLUMN not in columns_of(admin_conn, schema_name(t), "clients")

    # The new column is usable by the app role, and every table still forces RLS.
    app_engine = create_app_engine(config, pool_size=1)
    try:
        verify_app_role(app_engine)
    finally:
        app_engine.dispose()
    unforced = admin_conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind = 'r' AND c.relname <> 'alembic_version' "
        "AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
        (list(schemas.values()),)).fetchall()
    assert unforced == []
    with psycopg.connect(_app_conninfo(database_url)) as conn:
        for t in (ids[0], doomed):
            conn.execute("SELECT set_config('search_path', %s, true), "
                         "set_config('app.tenant_id', %s, true)", (schemas[t], str(t)))
            conn.execute(f"INSERT INTO clients (first_name, last_name, {COLUMN}) "
                         "VALUES ('Ada', 'Lovelace', 'tagged')")
            assert conn.execute(f"SELECT {COLUMN} FROM clients").fetchall() == [("tagged",)]
            conn.rollback()


def _app_conninfo(database_url: str) -> str:
    url = make_url(database_url).set(drivername="postgresql", username=APP_ROLE,
                                     password=APP_PASSWORD)
    return url.render_as_string(hide_password=False)


def test_cli_upgrade_single_tenant_prints_its_status(
    app: Flask, owner_engine: Engine, own_tenants: list[uuid.UUID],
    admin_conn: psycopg.Connection[Any],
) -> None:
    target = new_tenant(owner_engine, own_tenants, "cli-target")
    other = new_tenant(owner_engine, own_tenants, "cli-other")
    reset_to_base(admin_conn, target)
    reset_to_base(admin_conn, other)

    result = app.test_cli_runner().invoke(args=["tenancy", "upgrade", "--tenant", str(target)])
    assert result.exit_code == 0, result.output
    head = tenant_head()
    assert f"{target}: base -> {head} migrated" in result.output
    assert "tenants: 1 total, 0 already at" in result.output
    assert "1 migrated, 0 failed" in result.output
    assert str(other) not in result.output
    assert version_of(admin_conn, schema_name(target)) == head
    # Only the named tenant was migrated.
    assert admin_conn.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s", (schema_name(other),)
    ).fetchone() is None

    again = app.test_cli_runner().invoke(args=["tenancy", "upgrade", "--tenant", str(target)])
    assert again.exit_code == 0, again.output
    assert f"tenants: 1 total, 1 already at {head}, 0 migrated, 0 failed" in again.output

    upgraded = app.test_cli_runner().invoke(args=["tenancy", "upgrade", "--tenant", str(other)])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"{other}: base -> {head} migrated" in upgraded.output


def test_cli_upgrade_unknown_tenant_fails(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["tenancy", "upgrade", "--tenant", str(uuid.uuid4())])
    assert result.exit_code != 0
    assert "no such tenant" in result.output


def test_cli_upgrade_rejects_a_non_uuid_tenant(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["tenancy", "upgrade", "--tenant", "t_abc"])
    assert result.exit_code != 0
    assert "not a tenant id" in result.output


FORKED_RUNS = """
import json, sys, uuid
from pathlib import Path
from tenancy.database import DatabaseConfig
from tenancy.migrate import upgrade_tenants

args = json.loads(sys.argv[1])
config = DatabaseConfig(admin_url=args["url"], app_password=args["password"],
                        owner_role=args["owner"], app_role=args["app"])
extra = [Path(args["extra"])]
first = upgrade_tenants(config, jobs=1, tenant_ids=[uuid.UUID(t) for t in args["first"]],
                        extra_version_locations=extra)
second = upgrade_tenants(config, jobs=2, tenant_ids=[uuid.UUID(t) for t in args["rest"]],
                         extra_version_locations=extra)
print(json.dumps({"first": [o.status for o in first.outcomes],
                  "second": [o.status for o in second.outcomes],
                  "errors": [o.error for o in second.failed]}))
"""


def test_forked_workers_do_not_share_the_parents_connection(
    database_url: str, owner_engine: Engine, own_tenants: list[uuid.UUID],
    admin_conn: psycopg.Connection[Any], counter: str, tmp_path: Path,
) -> None:
    revision = write_revision(tmp_path / "versions")
    ids = [new_tenant(owner_engine, own_tenants, f"fork{i}") for i in range(9)]
    script = tmp_path / "forked_runs.py"
    script.write_text(FORKED_RUNS)
    args = {"url": database_url, "password": APP_PASSWORD, "owner": OWNER_ROLE,
            "app": APP_ROLE, "extra": str(tmp_path / "versions"),
            "first": [str(ids[0])], "rest": [str(t) for t in ids[1:]]}
    # A separate process (and process group), so a hang can be ended without leaving
    # workers behind in the test process.
    command = [sys.executable, str(script), json.dumps(args)]
    proc = subprocess.Popen(command, cwd=ROOT,  # noqa: S603  (our own script)
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=FORK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the jobs=2 run after a jobs=1 run hung for {FORK_TIMEOUT} s")
    assert proc.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["errors"] == []
    assert result["first"] == ["migrated"]
    assert result["second"] == ["migrated"] * (len(ids) - 1)
    pids = dict(admin_conn.execute(f"SELECT schema, pid FROM public.{counter}").fetchall())
    parent_pid = pids.pop(schema_name(ids[0]))
    assert parent_pid not in set(pids.values()), "a forked worker used the parent's backend"
    assert {version_of(admin_conn, schema_name(t)) for t in ids} == {revision}

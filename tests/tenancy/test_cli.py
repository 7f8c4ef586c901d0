"""Operator commands: ``flask tenancy create | list | suspend | activate | upgrade``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import Result
from flask import Flask

from tenancy.provisioning import tenant_head
from tenancy.security import schema_name


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["tenancy", *args])


def listed(app: Flask) -> dict[uuid.UUID, tuple[str, str]]:
    result = run(app, "list")
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.output.splitlines():
        tenant_id, status, name = line.split("\t", 2)
        rows[uuid.UUID(tenant_id)] = (status, name)
    return rows


@pytest.fixture
def created(app: Flask, admin_conn: psycopg.Connection[Any]) -> Iterator[list[uuid.UUID]]:
    """Ids of tenants created through the CLI; removed afterwards."""
    ids: list[uuid.UUID] = []
    yield ids
    for tenant_id in ids:
        admin_conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name(tenant_id)}" CASCADE')
    if ids:
        admin_conn.execute("DELETE FROM public.tenants WHERE id = ANY(%s)", (ids,))


def create(app: Flask, created: list[uuid.UUID], name: str, sub: str | None = None) -> uuid.UUID:
    result = run(app, "create", "--name", name, "--admin-sub", sub or f"cli-{uuid.uuid4()}")
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"([0-9a-f-]{36})\tactive\t(.*)\n", result.output)
    assert match, result.output
    assert match.group(2) == name
    tenant_id = uuid.UUID(match.group(1))
    created.append(tenant_id)
    return tenant_id


def test_create_prints_the_new_id_and_list_shows_it(
    app: Flask, created: list[uuid.UUID], admin_conn: psycopg.Connection[Any],
) -> None:
    sub = f"cli-{uuid.uuid4()}"
    tenant_id = create(app, created, "Praxis Über Tab-los", sub)
    assert listed(app)[tenant_id] == ("active", "Praxis Über Tab-los")
    # A real tenant: schema at head, its admin a member.
    assert admin_conn.execute(
        f'SELECT version_num FROM "{schema_name(tenant_id)}".alembic_version'
    ).fetchall() == [(tenant_head(),)]
    assert admin_conn.execute(
        "SELECT tenant_id, role FROM public.memberships WHERE user_id = %s", (sub,)
    ).fetchall() == [(tenant_id, "admin")]


def test_create_for_a_subject_that_already_belongs_to_a_practice_fails(
    app: Flask, created: list[uuid.UUID],
) -> None:
    sub = f"cli-{uuid.uuid4()}"
    create(app, created, "Praxis Erste", sub)
    before = listed(app)
    result = run(app, "create", "--name", "Praxis Zweite", "--admin-sub", sub)
    assert result.exit_code != 0
    assert "already belongs" in result.output
    assert listed(app) == before


def test_create_requires_name_and_admin_sub(app: Flask) -> None:
    assert run(app, "create", "--name", "Praxis Ohne").exit_code != 0
    assert run(app, "create", "--admin-sub", "someone").exit_code != 0


def test_suspend_and_activate_change_the_status(app: Flask, created: list[uuid.UUID]) -> None:
    tenant_id = create(app, created, "Praxis Pause")
    bystander = create(app, created, "Praxis Nebenan")

    suspended = run(app, "suspend", str(tenant_id))
    assert suspended.exit_code == 0, suspended.output
    assert suspended.output == f"{tenant_id}\tsuspended\tPraxis Pause\n"
    rows = listed(app)
    assert rows[tenant_id] == ("suspended", "Praxis Pause")
    assert rows[bystander] == ("active", "Praxis Nebenan")

    again = run(app, "suspend", str(tenant_id))  # idempotent
    assert again.exit_code == 0, again.output
    assert listed(app)[tenant_id][0] == "suspended"

    activated = run(app, "activate", str(tenant_id))
    assert activated.exit_code == 0, activated.output
    assert activated.output == f"{tenant_id}\tactive\tPraxis Pause\n"
    assert listed(app)[tenant_id] == ("active", "Praxis Pause")


def test_suspend_of_an_unknown_tenant_fails(app: Flask) -> None:
    before = listed(app)
    result = run(app, "suspend", str(uuid.uuid4()))
    assert result.exit_code == 1
    assert "no such tenant" in result.output
    assert run(app, "activate", str(uuid.uuid4())).exit_code == 1
    assert listed(app) == before


@pytest.mark.parametrize("argument", ["not-a-uuid", "t_0123", "'; DROP TABLE tenants; --", ""])
def test_suspend_of_a_non_uuid_fails(app: Flask, argument: str) -> None:
    result = run(app, "suspend", argument)
    assert result.exit_code == 2, result.output
    assert "not a tenant id" in result.output


def test_suspend_requires_an_argument(app: Flask) -> None:
    assert run(app, "suspend").exit_code == 2


def test_upgrade_is_idempotent(app: Flask, created: list[uuid.UUID]) -> None:
    create(app, created, "Praxis Upgrade")
    first = run(app, "upgrade")
    assert first.exit_code == 0, first.output
    assert "public: at head" in first.output
    second = run(app, "upgrade", "--jobs", "4")
    assert second.exit_code == 0, second.output
    assert "public: at head" in second.output
    summary = re.search(r"tenants: (\d+) total, (\d+) already at (\S+), (\d+) migrated, "
                        r"(\d+) failed", second.output)
    assert summary, second.output
    total, at_head, head, migrated, failed = summary.groups()
    assert (head, migrated, failed) == (tenant_head(), "0", "0")
    assert int(total) == int(at_head) >= 1
    # No per-tenant lines: nothing was migrated.
    assert not re.search(r"^[0-9a-f-]{36}: ", second.output, re.MULTILINE)


def test_upgrade_rejects_bad_jobs(app: Flask) -> None:
    assert run(app, "upgrade", "--jobs", "0").exit_code == 2
    assert run(app, "upgrade", "--jobs", "65").exit_code == 2


def test_upgrade_verbose_lists_tenants_already_at_head(
    app: Flask, created: list[uuid.UUID],
) -> None:
    tenant_id = create(app, created, "Praxis Verbose")
    result = run(app, "upgrade", "--tenant", str(tenant_id), "--verbose")
    assert result.exit_code == 0, result.output
    assert str(tenant_id) in result.output


def test_upgrade_skips_offboarded_practices(app: Flask, created: list[uuid.UUID]) -> None:
    """The release step runs `flask tenancy upgrade` at every start: a practice that left
    (its schema dropped, its registry row kept as `erased`) must not make it fail."""
    gone = create(app, created, "Praxis Gegangen")
    erased = run(app, "erase", str(gone), "--yes")
    assert erased.exit_code == 0, erased.output
    result = run(app, "upgrade", "--tenant", str(gone))
    assert result.exit_code == 1 and "no such tenant" in result.output
    result = run(app, "upgrade")
    assert result.exit_code == 0, result.output
    assert str(gone) not in result.output

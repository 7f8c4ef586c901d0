"""Issue 10, finding 5: the app role cannot backdate or re-key an audit event.

As the app role, in the practice's own context (what any request, and anyone holding the
app role's password, can do): an event may be appended with the columns the application
supplies, never with a chosen time, id or practice; nothing may be changed or removed.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

ENTER = ("SELECT set_config('search_path', %(schema)s, true), "
         "set_config('app.tenant_id', %(tenant)s, true)")


@pytest.fixture
def in_practice(make_practice: Any, app_role_conn: psycopg.Connection[Any]) -> Any:
    practice = make_practice("Protokoll")
    app_role_conn.execute(ENTER, {"schema": f"t_{practice.id.hex}", "tenant": str(practice.id)})
    return app_role_conn


@pytest.mark.parametrize("column, value", [
    ("occurred_at", "2020-01-01"),
    ("id", 1),
    ("tenant_id", None),  # filled in below: the practice's own id
])
def test_server_supplied_columns_cannot_be_written(in_practice: Any, column: str,
                                                   value: Any) -> None:
    conn = in_practice
    if value is None:
        value = conn.execute("SELECT current_setting('app.tenant_id')").fetchone()[0]
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"INSERT INTO audit_events (actor_id, actor_role, action, resource_type, "
                     f"resource_ids, {column}) VALUES ('bea', 'admin', 'client.read', "
                     "'client', '{}', %s)", (value,))
    conn.rollback()


def test_an_event_gets_the_server_time_and_cannot_be_changed(in_practice: Any) -> None:
    conn = in_practice
    row = conn.execute(
        "INSERT INTO audit_events (actor_id, actor_role, action, resource_type, resource_ids, "
        "request_id) VALUES ('bea', 'admin', 'client.read', 'client', '{}', 'r') "
        "RETURNING id, occurred_at > now() - interval '1 minute'").fetchone()
    assert row is not None and row[1] is True
    for statement in ("UPDATE audit_events SET occurred_at = '2020-01-01' WHERE id = %s",
                      "DELETE FROM audit_events WHERE id = %s"):
        conn.execute("SAVEPOINT s")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement, (row[0],))
        conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.rollback()


def test_the_request_id_is_the_servers_not_the_callers(make_practice: Any) -> None:
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", json={"first_name": "A", "last_name": "B"},
        headers={**practice.admin.headers, "X-Request-ID": "chosen-by-caller"})
    assert response.status_code == 201
    event = practice.client.get("/api/v1/admin/audit-events?action=client.create",
                                headers=practice.admin.headers).json[0]
    assert event["request_id"] == response.headers["X-Request-ID"] != "chosen-by-caller"
    assert event["client_request_id"] == "chosen-by-caller"
    # An unusable value is dropped, not stored.
    response = practice.client.post(
        "/api/v1/clients", json={"first_name": "A", "last_name": "C"},
        headers={**practice.admin.headers, "X-Request-ID": "x" * 65})
    event = practice.client.get("/api/v1/admin/audit-events?action=client.create",
                                headers=practice.admin.headers).json[0]
    assert event["client_request_id"] is None

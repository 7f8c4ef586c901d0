"""The request's work and its audit event commit together or not at all.

``api.db.commit_request`` sends the audit INSERT and the COMMIT as one message; if the
INSERT fails, the server must skip the COMMIT, so the request's own writes are gone too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask, jsonify

from api import create_app
from api.audit import audit
from api.auth import actor, tenant_member
from api.db import AUDIT_KEY, session
from models import Client
from tests.conftest import app_config


def _write_then_fail_the_audit() -> Any:
    """Add a client, then an audit event the table cannot store (actor_role too long)."""
    db = session()
    db.add(Client(first_name="Partial", last_name="Write"))
    db.flush()
    audit(db, actor(), "client.create", "client", [])
    db.info[AUDIT_KEY][-1]["actor_role"] = "x" * 500
    return jsonify(user=actor().user_id)


def _write_and_audit() -> Any:
    db = session()
    client = Client(first_name="Whole", last_name="Write")
    db.add(client)
    db.flush()
    audit(db, actor(), "client.create", "client", [client.id])
    audit(db, actor(), "client.read", "client", [client.id])  # two events: one multi-row INSERT
    return jsonify(id=str(client.id))


@pytest.fixture
def probe_app(app: Flask, database_url: str, issuer: Any) -> Iterator[Flask]:
    del app  # the shared app has migrated the database
    application = create_app(app_config(database_url, issuer))
    application.add_url_rule("/probe/fail", "fail", tenant_member("admin")(
        _write_then_fail_the_audit), methods=["POST"])
    application.add_url_rule("/probe/ok", "ok", tenant_member("admin")(_write_and_audit),
                             methods=["POST"])
    yield application
    application.extensions["clinai_db"].dispose()


def test_a_failed_audit_insert_takes_the_write_with_it(probe_app, make_practice,
                                                       admin_conn: psycopg.Connection[Any]):
    practice = make_practice("Audit")
    client = probe_app.test_client()
    try:
        response = client.post("/probe/fail", headers=practice.admin.headers)
    except psycopg.Error:  # the test app propagates exceptions
        pass
    else:
        assert response.status_code >= 400
    schema = f"t_{practice.id.hex}"
    assert admin_conn.execute(
        f"SELECT count(*) FROM {schema}.clients WHERE first_name = 'Partial'").fetchone() == (0,)
    assert admin_conn.execute(f"SELECT count(*) FROM {schema}.audit_events "
                              "WHERE action = 'client.create'").fetchone() == (0,)
    # The connection went back to the pool clean: the next request works.
    ok = client.post("/probe/ok", headers=practice.admin.headers)
    assert ok.status_code == 200, ok.json
    rows = admin_conn.execute(
        f"SELECT action, resource_ids FROM {schema}.audit_events "
        "WHERE action IN ('client.create', 'client.read') ORDER BY id").fetchall()
    assert [(action, [str(i) for i in ids]) for action, ids in rows] == [
        ("client.create", [ok.json["id"]]), ("client.read", [ok.json["id"]])]

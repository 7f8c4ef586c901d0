"""Pool safety: tenant context never outlives its transaction on a pooled connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify
from sqlalchemy import func, select, text

from api import create_app
from api.auth import tenant_member
from api.db import get_db, session
from models import Client
from tests.conftest import app_config


def _probe() -> Any:
    """Count clients, commit mid-request, then look again in the new transaction."""
    db = session()
    before = db.scalar(select(func.count()).select_from(Client))
    names_before = sorted(db.scalars(select(Client.last_name)))
    db.commit()
    row = db.execute(text(
        "SELECT current_setting('app.tenant_id', true) AS tenant, current_schema() AS schema"
    )).one()
    after = db.scalar(select(func.count()).select_from(Client))
    return jsonify(before=before, after=after, tenant=row.tenant, schema=row.schema,
                   names=names_before)


@pytest.fixture
def pool_of_one(app: Flask, database_url: str, issuer: Any) -> Iterator[Flask]:
    """An app whose request pool holds exactly one connection, with a probe route."""
    del app  # the shared app has migrated the database
    application = create_app(app_config(database_url, issuer, DATABASE_POOL_SIZE=1))
    application.add_url_rule("/probe", "probe", tenant_member("admin", "therapist")(_probe))
    yield application
    application.extensions["clinai_db"].dispose()


def test_interleaved_tenants_on_one_connection(pool_of_one, make_practice):
    a, b = make_practice("A"), make_practice("B")
    for i in range(2):
        a.create_client(last_name=f"Alpha{i}")
    b.create_client(last_name="Beta")
    client = pool_of_one.test_client()
    for _ in range(5):
        for practice, names in ((a, ["Alpha0", "Alpha1"]), (b, ["Beta"])):
            body = client.get("/probe", headers=practice.admin.headers).json
            assert body["names"] == names
            assert body["before"] == body["after"] == len(names)
            # The context is re-entered on the transaction that follows the commit.
            assert body["tenant"] == str(practice.id)
            assert body["schema"] == f"t_{practice.id.hex}"
    # Between requests the pooled connection carries no tenant at all.
    with get_db_engine(pool_of_one).connect() as conn:
        row = conn.execute(text(
            "SELECT coalesce(current_setting('app.tenant_id', true), '') AS tenant, "
            "current_setting('search_path') AS path")).one()
        assert row.tenant == ""
        assert "t_" not in row.path
        assert conn.scalar(text("SELECT count(*) FROM public.memberships")) == 0


def get_db_engine(app: Flask) -> Any:
    with app.app_context():
        return get_db().engine


def test_concurrent_requests_of_two_tenants(app, make_practice):
    """Threads sharing the pool never see each other's tenant (gunicorn runs threads)."""
    a, b = make_practice("A"), make_practice("B")
    ids = {a.id: {a.create_client(last_name="A1")["id"]},
           b.id: {b.create_client(last_name="B1")["id"]}}
    failures: list[str] = []

    def worker(practice: Any) -> None:
        client = app.test_client()
        for _ in range(25):
            response = client.get("/api/v1/clients", headers=practice.admin.headers)
            seen = {c["id"] for c in response.json}
            if response.status_code != 200 or seen != ids[practice.id]:
                failures.append(f"{practice.id}: {response.status_code} {seen}")

    threads = [threading.Thread(target=worker, args=(p,)) for p in (a, b) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_failed_membership_check_leaves_no_context(pool_of_one, make_practice, issuer):
    """A refused request (unknown tenant) must not leave settings on the connection."""
    a = make_practice("A")
    a.create_client(last_name="Alpha")
    client = pool_of_one.test_client()
    stranger = issuer.token("nobody", tenant=a.id, role="admin")
    refused = client.get("/probe", headers={"Authorization": f"Bearer {stranger}"})
    assert (refused.status_code, refused.json["error"]) == (403, "not_a_member")
    with get_db_engine(pool_of_one).connect() as conn:
        assert conn.scalar(text("SELECT coalesce(current_setting('app.tenant_id', true), '')"))\
            == ""
    ok = client.get("/probe", headers=a.admin.headers)
    assert ok.json["names"] == ["Alpha"]

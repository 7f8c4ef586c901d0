"""Offboarding a practice (DELETE /api/v1/admin/tenant, flask tenancy erase) and the
scheduled purge (flask gdpr purge)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask

from api.storage import storage
from storage.base import tenant_container
from tenancy.offboarding import erase_tenant
from tenancy.security import schema_name
from tests.api.test_lifecycle import OLD_SESSION, PAST_END, _patch, _restrict, _scan, _session
from tests.conftest import TEST_STORAGE_ROOT, Practice, assert_error


def _populate(practice: Practice, app: Flask) -> dict[str, Any]:
    therapist = practice.add_member()
    client = practice.create_client(by=therapist)
    record = _session(practice, client["id"], by=therapist)
    draft = practice.client.post(f"/api/v1/sessions/{record['id']}/note-drafts",
                                 headers=therapist.headers, json={"format": "SOAP"})
    assert draft.status_code == 201, draft.json
    invited = practice.client.post("/api/v1/admin/invitations", headers=practice.admin.headers,
                                   json={"email": "neu@example.org", "role": "therapist"})
    assert invited.status_code == 201
    with app.app_context():
        storage().put(tenant_container(practice.id), "exports/old.zip", b"PK fake export")
    return {"therapist": therapist, "client": client}


def _leftovers(admin_conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> dict[str, Any]:
    def one(sql: str, *params: Any) -> Any:
        row = admin_conn.execute(sql, params).fetchone()
        return row[0] if row else None

    return {
        "schema": one("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                      schema_name(tenant_id)),
        **{table: one(f"SELECT count(*) FROM public.{table} WHERE tenant_id = %s", tenant_id)
           for table in ("memberships", "invitations", "llm_budgets", "tenant_migrations")},
        "container": Path(TEST_STORAGE_ROOT, tenant_container(tenant_id)).exists(),
        "status": one("SELECT status FROM public.tenants WHERE id = %s", tenant_id),
        "ledger": one("SELECT count(*) FROM public.llm_usage WHERE tenant_id = %s", tenant_id),
    }


def test_an_admin_offboards_the_practice(make_practice: Any, app: Flask,
                                         admin_conn: psycopg.Connection[Any]) -> None:
    practice, neighbour = make_practice("Praxis Abschied"), make_practice("Praxis Nachbar")
    seeded = _populate(practice, app)
    other = _populate(neighbour, app)
    before = _leftovers(admin_conn, practice.id)
    assert before["schema"] == 1 and before["memberships"] == 2 and before["container"]

    wrong = practice.client.delete("/api/v1/admin/tenant", headers=practice.admin.headers,
                                   json={"confirm": "Praxis abschied"})
    assert_error(wrong, 422, "validation_failed")
    refused = practice.client.delete("/api/v1/admin/tenant",
                                     headers=seeded["therapist"].headers,
                                     json={"confirm": "Praxis Abschied"})
    assert_error(refused, 403, "role_forbidden")
    assert _leftovers(admin_conn, practice.id) == before

    done = practice.client.delete("/api/v1/admin/tenant", headers=practice.admin.headers,
                                  json={"confirm": "Praxis Abschied"})
    assert done.status_code == 200, done.json
    assert done.json == {"id": str(practice.id), "status": "erased"}
    after = _leftovers(admin_conn, practice.id)
    assert after == {"schema": 0, "memberships": 0, "invitations": 0, "llm_budgets": 0,
                     "tenant_migrations": 0, "container": False, "status": "erased",
                     "ledger": before["ledger"]}
    assert before["ledger"] >= 1  # the ledger stays: the platform bills from it
    grants = admin_conn.execute(
        "SELECT count(*) FROM information_schema.role_table_grants "
        "WHERE table_schema = %s", (schema_name(practice.id),)).fetchone()
    assert grants == (0,)
    for who in (practice.admin, seeded["therapist"]):
        assert_error(practice.client.get("/api/v1/clients", headers=who.headers), 403,
                     "tenant_inactive")
    # The neighbour is whole.
    got = neighbour.client.get(f"/api/v1/clients/{other['client']['id']}",
                               headers=other["therapist"].headers)
    assert got.status_code == 200
    assert _leftovers(admin_conn, neighbour.id)["container"]
    # A second attempt by the operator finds nothing left to do.
    again = app.test_cli_runner().invoke(args=["tenancy", "erase", str(practice.id), "--yes"])
    assert again.exit_code == 0 and "already" in again.output


def test_an_interrupted_offboarding_resumes(make_practice: Any, app: Flask,
                                            admin_conn: psycopg.Connection[Any]) -> None:
    practice = make_practice("Praxis Absturz")
    seeded = _populate(practice, app)

    def crash() -> None:
        raise RuntimeError("killed")

    with app.app_context(), pytest.raises(RuntimeError):
        erase_tenant(app.extensions["clinai_db"].owner_engine, storage(), practice.id,
                     before_drop=crash)
    half = _leftovers(admin_conn, practice.id)
    assert half["status"] == "closing" and half["schema"] == 1 and not half["container"]
    # Closed means closed: every token is refused although the data is still there.
    assert_error(practice.client.get("/api/v1/clients", headers=seeded["therapist"].headers),
                 403, "tenant_inactive")
    activate = app.test_cli_runner().invoke(args=["tenancy", "activate", str(practice.id)])
    assert activate.exit_code != 0
    # The scheduled purge finishes it.
    purged = app.test_cli_runner().invoke(args=["gdpr", "purge"])
    assert purged.exit_code == 0, purged.output
    assert f"tenant {practice.id}: offboarding finished" in purged.output
    assert _leftovers(admin_conn, practice.id)["schema"] == 0
    assert _leftovers(admin_conn, practice.id)["status"] == "erased"


def test_the_operator_erases_a_practice(make_practice: Any, app: Flask,
                                        admin_conn: psycopg.Connection[Any]) -> None:
    practice = make_practice("Praxis Betreiber")
    _populate(practice, app)
    runner = app.test_cli_runner()
    unknown = runner.invoke(args=["tenancy", "erase", str(uuid.uuid4()), "--yes"])
    assert unknown.exit_code != 0
    aborted = runner.invoke(args=["tenancy", "erase", str(practice.id)], input="n\n")
    assert aborted.exit_code != 0
    assert _leftovers(admin_conn, practice.id)["status"] == "active"
    done = runner.invoke(args=["tenancy", "erase", str(practice.id)], input="y\n")
    assert done.exit_code == 0, done.output
    assert _leftovers(admin_conn, practice.id)["schema"] == 0


def _purge(app: Flask, as_of: str) -> str:
    result = app.test_cli_runner().invoke(args=["gdpr", "purge", "--as-of", as_of])
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_purge_erases_restricted_clients_once_retention_ends(
        make_practice: Any, app: Flask, admin_conn: psycopg.Connection[Any]) -> None:
    practice = make_practice()
    therapist = practice.add_member()
    due = practice.create_client(by=therapist, first_name="Roswitha",
                                 last_name="Ablaufdatum")
    _session(practice, due["id"], transcript="T: Geheimnis4711", by=therapist,
             started_at=OLD_SESSION)
    running = practice.create_client(by=therapist, first_name="Berta", last_name="Laufend")
    _session(practice, running["id"], by=therapist, started_at=OLD_SESSION)
    unrestricted = practice.create_client(by=therapist, first_name="Ulla", last_name="Offen")
    _session(practice, unrestricted["id"], by=therapist, started_at=OLD_SESSION)
    for client, ended in ((due, "2020-01-15"), (running, "2026-06-30"),
                          (unrestricted, PAST_END)):
        assert _patch(practice, client["id"], {"treatment_ended_on": ended,
                                               "status": "discharged"}).status_code == 200
    for client in (due, running):
        assert _restrict(practice, client["id"]).status_code == 200

    # Kept through its last day (2030-01-15), erased the day after. A rehearsal first.
    assert f"tenant {practice.id}: erased" not in _purge(app, "2030-01-15")
    rehearsal = app.test_cli_runner().invoke(
        args=["gdpr", "purge", "--as-of", "2030-01-16", "--dry-run"])
    assert rehearsal.exit_code == 0, rehearsal.output
    assert rehearsal.output.startswith("dry run: nothing was changed")
    assert f"tenant {practice.id}: would have erased 1 client(s)" in rehearsal.output
    assert practice.client.get(f"/api/v1/clients/{due['id']}",
                               headers=practice.admin.headers).status_code == 200
    output = _purge(app, "2030-01-16")
    assert f"tenant {practice.id}: erased 1 client(s)" in output
    assert _scan(admin_conn, practice.id, [due["id"], "Roswitha", "Ablaufdatum",
                                           "Geheimnis4711"]) == []
    admin = practice.admin.headers
    assert_error(practice.client.get(f"/api/v1/clients/{due['id']}", headers=admin), 404,
                 "not_found")
    for kept in (running, unrestricted):
        assert practice.client.get(f"/api/v1/clients/{kept['id']}",
                                   headers=admin).status_code == 200
    trail = practice.client.get("/api/v1/admin/audit-events?action=client.erase",
                                headers=admin).json
    assert [e["actor_id"] for e in trail] == ["system:purge"]
    # Idempotent: the next run finds nothing more of this practice.
    assert f"tenant {practice.id}: erased" not in _purge(app, "2030-01-16")


def test_purge_deletes_expired_exports(make_practice: Any, app: Flask,
                                       admin_conn: psycopg.Connection[Any]) -> None:
    practice = make_practice()
    schema = schema_name(practice.id)
    with app.app_context():
        for name in ("exports/expired.zip", "exports/fresh.zip"):
            storage().put(tenant_container(practice.id), name, b"PK data")
    for name, expires in (("exports/expired.zip", "now() - interval '1 day'"),
                          ("exports/fresh.zip", "now() + interval '29 days'")):
        admin_conn.execute(
            f"INSERT INTO {schema}.data_exports (tenant_id, kind, status, blob_name, "
            f"requested_by, expires_at) VALUES (%s, 'practice', 'ready', %s, 'x', {expires})",
            (practice.id, name))
    admin_conn.execute(
        f"INSERT INTO {schema}.data_exports (tenant_id, kind, status, requested_by, "
        f"created_at, expires_at) VALUES (%s, 'practice', 'running', 'x', "
        f"now() - interval '2 hours', now() + interval '29 days')", (practice.id,))
    output = app.test_cli_runner().invoke(args=["gdpr", "purge"]).output
    assert (f"tenant {practice.id}: erased 0 client(s) whose retention ended, deleted 1 "
            f"expired export(s), marked 1 interrupted export(s) failed") in output
    rows = admin_conn.execute(f"SELECT blob_name, status, error FROM {schema}.data_exports "
                              "ORDER BY blob_name, status").fetchall()
    assert rows == [("exports/fresh.zip", "ready", None), (None, "failed", "interrupted"),
                    (None, "ready", None)]  # the expired one keeps its row, not its file
    with app.app_context():
        assert storage().list(tenant_container(practice.id)) == ["exports/fresh.zip"]


def test_offboarding_while_members_write(make_practice: Any, app: Flask,
                                         admin_conn: psycopg.Connection[Any]) -> None:
    """Writes in flight when the practice closes: the offboarding answers 200 (or 503
    offboarding_incomplete, finished by the purge), never a 500; the writes end with
    their own answers (201 before the close, 403 after), none with a 500."""
    practice = make_practice("Praxis Eilig")
    therapist = practice.add_member()

    def write(i: int) -> int:
        response = app.test_client().post(
            "/api/v1/clients", headers=therapist.headers,
            json={"first_name": "Eile", "last_name": f"Nummer {i}"})
        return int(response.status_code)

    with ThreadPoolExecutor(6) as pool:
        writes = [pool.submit(write, i) for i in range(24)]
        closed = app.test_client().delete("/api/v1/admin/tenant",
                                          headers=practice.admin.headers,
                                          json={"confirm": "Praxis Eilig"})
        statuses = {f.result() for f in writes}
    assert closed.status_code in (200, 503), closed.get_json()
    if closed.status_code == 503:
        assert_error(closed, 503, "offboarding_incomplete")
        app.test_cli_runner().invoke(args=["gdpr", "purge"])
    assert statuses <= {201, 403}, statuses
    left = _leftovers(admin_conn, practice.id)
    assert left["status"] == "erased" and left["schema"] == 0


def test_one_inconsistent_client_does_not_stop_the_purge(
        make_practice: Any, app: Flask, admin_conn: psycopg.Connection[Any]) -> None:
    """A restricted client whose record has a session after its treatment end (written
    before that rule existed) is reported and skipped; the rest is purged."""
    practice = make_practice()
    odd = practice.create_client(first_name="Ungleich")
    due = practice.create_client(first_name="Faellig")
    for client in (odd, due):
        _session(practice, client["id"], started_at=OLD_SESSION)
        assert _patch(practice, client["id"], {"treatment_ended_on": PAST_END,
                                               "status": "discharged"}).status_code == 200
        assert _restrict(practice, client["id"]).status_code == 200
    admin_conn.execute(f"UPDATE {schema_name(practice.id)}.therapy_sessions "
                       "SET started_at = now() - interval '1 day' WHERE client_id = %s",
                       (uuid.UUID(odd["id"]),))
    result = app.test_cli_runner().invoke(args=["gdpr", "purge"])
    assert result.exit_code == 1
    assert f"client {odd['id']} not erased (retention_period_running)" in result.output
    assert f"tenant {practice.id}: erased 1 client(s)" in result.output
    admin = practice.admin.headers
    assert practice.client.get(f"/api/v1/clients/{odd['id']}", headers=admin).status_code \
        == 200
    assert_error(practice.client.get(f"/api/v1/clients/{due['id']}", headers=admin), 404,
                 "not_found")

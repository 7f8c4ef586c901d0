"""Retention, restriction (GDPR Art. 18) and erasure (Art. 17) of a client's record."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from storage.base import tenant_container
from tenancy.security import schema_name
from tests.api.test_exports import _export, _wait
from tests.conftest import TEST_STORAGE_ROOT, Actor, Practice, assert_error

PAST_END = "2010-03-31"  # retention (10 years) ended on 2020-03-31
OLD_SESSION = "2009-06-02T09:00:00+02:00"  # a session before PAST_END


def _etag(practice: Practice, client_id: str, by: Actor | None = None) -> str:
    got = practice.client.get(f"/api/v1/clients/{client_id}",
                              headers=(by or practice.admin).headers)
    assert got.status_code == 200, got.json
    return str(got.headers["ETag"])


def _patch(practice: Practice, client_id: str, body: dict[str, Any],
           by: Actor | None = None) -> Any:
    who = by or practice.admin
    return practice.client.patch(f"/api/v1/clients/{client_id}", json=body,
                                 headers={**who.headers,
                                          "If-Match": _etag(practice, client_id, who)})


def _session(practice: Practice, client_id: str, transcript: str = "T: Hallo.",
             by: Actor | None = None,
             started_at: str = "2026-11-20T09:00:00+01:00") -> dict[str, Any]:
    made = practice.client.post(
        f"/api/v1/clients/{client_id}/sessions", headers=(by or practice.admin).headers,
        json={"started_at": started_at, "duration_minutes": 50,
              "modality": "video", "transcript": transcript})
    assert made.status_code == 201, made.json
    return dict(made.json)


def _erase(practice: Practice, client_id: str, **body: Any) -> Any:
    return practice.client.delete(f"/api/v1/clients/{client_id}",
                                  headers=practice.admin.headers,
                                  json={"confirm": client_id, **body})


def _restrict(practice: Practice, client_id: str) -> Any:
    return practice.client.post(f"/api/v1/clients/{client_id}/restriction",
                                headers=practice.admin.headers,
                                json={"reason": "Erasure requested; record must be kept"})


# --- Retention ---------------------------------------------------------------------


def test_retain_until_follows_treatment_end_and_practice_period(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client()
    assert client["treatment_ended_on"] is None and client["retain_until"] is None
    changed = _patch(practice, client["id"], {"treatment_ended_on": "2024-02-29",
                                              "status": "discharged"})
    assert changed.status_code == 200, changed.json
    # 29 February plus ten years: kept until 1 March (never a day too short).
    assert changed.json["retain_until"] == "2034-03-01"
    assert changed.json["status"] == "discharged"


def test_treatment_end_and_sessions_agree(make_practice: Any) -> None:
    """The retention period runs from the end of the treatment: it cannot end before its
    last session, and no session can start after it (an admin moves the end first)."""
    practice = make_practice()
    client = practice.create_client()
    _session(practice, client["id"], started_at="2026-03-10T23:30:00+01:00")
    early = assert_error(_patch(practice, client["id"], {"treatment_ended_on": "2026-03-09"}),
                         422, "validation_failed")
    assert "2026-03-10" in early["errors"]["json"]["treatment_ended_on"][0]
    assert _patch(practice, client["id"], {"treatment_ended_on": "2026-03-10"}).status_code \
        == 200
    later = practice.client.post(
        f"/api/v1/clients/{client['id']}/sessions", headers=practice.admin.headers,
        json={"started_at": "2026-03-11T00:30:00+01:00", "duration_minutes": 50,
              "modality": "video"})
    assert_error(later, 422, "validation_failed")


def test_treatment_end_and_a_new_session_at_once(make_practice: Any, app: Any) -> None:
    """An end before a session and the session itself, sent together: never both."""
    practice = make_practice()
    for _ in range(4):
        client = practice.create_client()
        etag = _etag(practice, client["id"])

        def end(cid: str = client["id"], tag: str = etag) -> int:
            return int(app.test_client().patch(
                f"/api/v1/clients/{cid}", json={"treatment_ended_on": "2015-01-01"},
                headers={**practice.admin.headers, "If-Match": tag}).status_code)

        def session(cid: str = client["id"]) -> int:
            return int(app.test_client().post(
                f"/api/v1/clients/{cid}/sessions", headers=practice.admin.headers,
                json={"started_at": "2026-10-01T09:00:00+02:00", "duration_minutes": 50,
                      "modality": "video"}).status_code)

        with ThreadPoolExecutor(2) as pool:
            ended, added = pool.submit(end), pool.submit(session)
            outcome = {ended.result(), added.result()}
        assert outcome in ({200, 422}, {201, 422}), outcome


def test_discharge_needs_a_treatment_end(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client()
    refused = _patch(practice, client["id"], {"status": "discharged"})
    body = assert_error(refused, 422, "validation_failed")
    assert "treatment_ended_on" in body["errors"]["json"]
    made = practice.client.post("/api/v1/clients", headers=practice.admin.headers,
                                json={"first_name": "A", "last_name": "B",
                                      "status": "discharged"})
    assert_error(made, 422, "validation_failed")


def test_only_admins_set_the_treatment_end(make_practice: Any) -> None:
    practice = make_practice()
    therapist = practice.add_member()
    client = practice.create_client(by=therapist)
    refused = _patch(practice, client["id"], {"treatment_ended_on": "2025-01-31"}, by=therapist)
    assert_error(refused, 403, "role_forbidden")
    future = _patch(practice, client["id"], {
        "treatment_ended_on": (dt.date.today() + dt.timedelta(days=2)).isoformat()})
    assert_error(future, 422, "validation_failed")
    before_birth = _patch(practice, client["id"], {"date_of_birth": "1990-01-01",
                                                   "treatment_ended_on": "1980-01-01"})
    assert_error(before_birth, 422, "validation_failed")


# --- Restriction -------------------------------------------------------------------


def test_restricted_client_is_hidden_from_therapists_and_read_only(
        make_practice: Any) -> None:
    practice = make_practice()
    therapist = practice.add_member()
    client = practice.create_client(by=therapist)
    record = _session(practice, client["id"], by=therapist)
    note = practice.client.post(f"/api/v1/sessions/{record['id']}/notes",
                                headers=therapist.headers,
                                json={"format": "free", "content": {"text": "Notiz"}})
    assert note.status_code == 201
    restricted = _restrict(practice, client["id"])
    assert restricted.status_code == 200, restricted.json
    assert restricted.json["restricted"] is True
    assert restricted.json["restriction_reason"].startswith("Erasure requested")
    assert_error(_restrict(practice, client["id"]), 409, "client_restricted")

    # The therapist: gone everywhere (404), and not in the list.
    for path in (f"/api/v1/clients/{client['id']}", f"/api/v1/sessions/{record['id']}",
                 f"/api/v1/notes/{note.json['id']}",
                 f"/api/v1/clients/{client['id']}/sessions"):
        assert_error(practice.client.get(path, headers=therapist.headers), 404, "not_found")
    listed = practice.client.get("/api/v1/clients", headers=therapist.headers)
    assert [c["id"] for c in listed.json] == []
    asked = practice.client.get("/api/v1/clients?include_restricted=true",
                                headers=therapist.headers)
    assert_error(asked, 403, "role_forbidden")

    # The admin: excluded from lists unless asked; reads audited; no writes.
    admin = practice.admin.headers
    assert practice.client.get("/api/v1/clients", headers=admin).json == []
    with_restricted = practice.client.get("/api/v1/clients?include_restricted=true",
                                          headers=admin)
    assert [c["id"] for c in with_restricted.json] == [client["id"]]
    listed_events = practice.client.get(
        "/api/v1/admin/audit-events?action=client.restricted_access",
        headers=admin).json
    assert listed_events and listed_events[0]["resource_ids"] == [client["id"]]
    assert practice.client.get(f"/api/v1/notes/{note.json['id']}", headers=admin).status_code \
        == 200
    events = practice.client.get(
        f"/api/v1/admin/audit-events?action=client.restricted_access"
        f"&resource_id={client['id']}", headers=admin).json
    assert len(events) >= 1
    assert_error(_patch(practice, client["id"], {"first_name": "Neu"}), 409,
                 "client_restricted")
    assert_error(practice.client.post(f"/api/v1/clients/{client['id']}/sessions",
                                      headers=admin,
                                      json={"started_at": "2026-11-20T09:00:00+01:00",
                                            "duration_minutes": 50, "modality": "video"}),
                 409, "client_restricted")
    sess_etag = practice.client.get(f"/api/v1/sessions/{record['id']}",
                                    headers=admin).headers["ETag"]
    assert_error(practice.client.patch(f"/api/v1/sessions/{record['id']}", headers={
        **admin, "If-Match": sess_etag}, json={"duration_minutes": 30}), 409,
        "client_restricted")
    assert_error(practice.client.post(f"/api/v1/sessions/{record['id']}/note-drafts",
                                      headers=admin, json={"format": "SOAP"}),
                 409, "client_restricted")
    assert_error(practice.client.post(f"/api/v1/clients/{client['id']}/conversations",
                                      headers=admin, json={}), 409, "client_restricted")
    # ... but the treatment end may still be recorded, so retention can start.
    ended = _patch(practice, client["id"], {"treatment_ended_on": "2026-11-25",
                                            "status": "discharged"})
    assert ended.status_code == 200, ended.json
    # ... never moved earlier (that would shorten the retention the record is kept for).
    assert_error(_patch(practice, client["id"], {"treatment_ended_on": "2016-01-01"}), 409,
                 "client_restricted")
    assert _patch(practice, client["id"], {"treatment_ended_on": "2026-11-28"}).status_code \
        == 200

    lifted = practice.client.delete(f"/api/v1/clients/{client['id']}/restriction",
                                    headers=admin)
    assert lifted.status_code == 200 and lifted.json["restricted"] is False
    assert practice.client.get(f"/api/v1/clients/{client['id']}",
                               headers=therapist.headers).status_code == 200
    assert_error(practice.client.delete(f"/api/v1/clients/{client['id']}/restriction",
                                        headers=admin), 404, "not_found")


def test_restriction_is_for_admins_of_the_practice(make_practice: Any) -> None:
    practice, other = make_practice(), make_practice("Praxis Andere")
    therapist = practice.add_member()
    client = practice.create_client(by=therapist)
    refused = practice.client.post(f"/api/v1/clients/{client['id']}/restriction",
                                   headers=therapist.headers, json={"reason": "x"})
    assert_error(refused, 403, "role_forbidden")
    assert_error(other.client.post(f"/api/v1/clients/{client['id']}/restriction",
                                   headers=other.admin.headers, json={"reason": "x"}),
                 404, "not_found")
    for body in ({}, {"reason": ""}, {"reason": "x" * 2001}, {"reason": 5}, [1]):
        bad = practice.client.post(f"/api/v1/clients/{client['id']}/restriction",
                                   headers=practice.admin.headers, json=body)
        assert_error(bad, 422, "validation_failed")


# --- Erasure -----------------------------------------------------------------------


def test_erasure_needs_the_confirmation(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client()
    for body in ({}, {"confirm": str(uuid.uuid4())}, {"confirm": ""}):
        refused = practice.client.delete(f"/api/v1/clients/{client['id']}",
                                         headers=practice.admin.headers, json=body)
        assert_error(refused, 422, "validation_failed")
    assert_error(_erase(practice, client["id"], override_retention="because"), 422,
                 "validation_failed")
    assert practice.client.get(f"/api/v1/clients/{client['id']}",
                               headers=practice.admin.headers).status_code == 200


def test_erasure_is_for_admins_and_their_practice(make_practice: Any) -> None:
    practice, other = make_practice(), make_practice("Praxis Andere")
    therapist = practice.add_member()
    client = practice.create_client(by=therapist)
    refused = practice.client.delete(f"/api/v1/clients/{client['id']}",
                                     headers=therapist.headers, json={"confirm": client["id"]})
    assert_error(refused, 403, "role_forbidden")
    assert_error(_erase(other, client["id"]), 404, "not_found")
    assert practice.client.get(f"/api/v1/clients/{client['id']}",
                               headers=therapist.headers).status_code == 200


def test_retention_blocks_erasure_of_a_documented_client(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client()
    _session(practice, client["id"])
    ongoing = assert_error(_erase(practice, client["id"]), 409, "retention_period_running")
    assert ongoing["errors"] == {"retain_until": None}
    _patch(practice, client["id"], {"treatment_ended_on": "2026-11-25",
                                    "status": "discharged"})
    running = assert_error(_erase(practice, client["id"]), 409, "retention_period_running")
    assert running["errors"] == {"retain_until": "2036-11-25"}
    assert practice.client.get(f"/api/v1/clients/{client['id']}",
                               headers=practice.admin.headers).status_code == 200
    overridden = _erase(practice, client["id"], override_retention="created_in_error")
    assert overridden.status_code == 200, overridden.json
    assert overridden.json["reason"] == "created_in_error"
    assert overridden.json["retain_until"] == "2036-11-25"
    assert_error(practice.client.get(f"/api/v1/clients/{client['id']}",
                                     headers=practice.admin.headers), 404, "not_found")


def test_undocumented_and_ended_clients_are_erased(make_practice: Any) -> None:
    practice = make_practice()
    fresh = practice.create_client()
    erased = _erase(practice, fresh["id"])
    assert erased.status_code == 200, erased.json
    assert erased.json["reason"] == "no_clinical_record"
    ended = practice.client.post("/api/v1/clients", headers=practice.admin.headers, json={
        "first_name": "Alt", "last_name": "Fall", "status": "discharged",
        "treatment_ended_on": PAST_END}).json
    _session(practice, ended["id"], started_at=OLD_SESSION)
    done = _erase(practice, ended["id"])
    assert done.status_code == 200, done.json
    assert done.json["reason"] == "retention_ended"
    assert done.json["record_counts"]["therapy_sessions"] == 1


def _scan(admin_conn: psycopg.Connection[Any], tenant_id: uuid.UUID,
          needles: list[str]) -> list[str]:
    """Every row of every table of the tenant's schema and of public, as text, and every
    stored file: where does any needle occur?"""
    found = []
    tables = admin_conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = ANY(%s)",
        ([schema_name(tenant_id), "public"],)).fetchall()
    assert len(tables) > 15
    for schema, table in tables:
        for (row,) in admin_conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
            found += [f"{schema}.{table}: {needle}" for needle in needles
                      if needle.lower() in row.lower()]
    for root, _dirs, files in os.walk(TEST_STORAGE_ROOT):
        for name in files:
            path = Path(root, name)
            if not path.is_relative_to(Path(TEST_STORAGE_ROOT, tenant_container(tenant_id))):
                continue
            data = path.read_bytes()
            if zipfile.is_zipfile(path):  # compressed: look inside
                with zipfile.ZipFile(path) as archive:
                    data += b"".join(archive.read(member) for member in archive.namelist())
            found += [f"file {name}: {needle}" for needle in needles
                      if needle.encode() in data or needle.encode() in name.encode()]
    return found


def _seed_everything(practice: Practice, therapist: Actor, first: str, last: str,
                     secret: str, started_at: str = OLD_SESSION) -> dict[str, Any]:
    client = practice.create_client(by=therapist, first_name=first, last_name=last,
                                    date_of_birth="1979-08-17",
                                    contact={"email": f"{first.lower()}@example.org",
                                             "phone": "+49 30 5550999"})
    record = _session(practice, client["id"], transcript=f"T: {secret} Wie geht es?",
                      by=therapist, started_at=started_at)
    note = practice.client.post(f"/api/v1/sessions/{record['id']}/notes",
                                headers=therapist.headers,
                                json={"format": "free", "content": {"text": f"{secret} N"}})
    assert note.status_code == 201
    signed = practice.client.post(f"/api/v1/notes/{note.json['id']}/sign",
                                  headers=therapist.headers)
    assert signed.status_code == 200
    draft = practice.client.post(f"/api/v1/sessions/{record['id']}/note-drafts",
                                 headers=therapist.headers, json={"format": "SOAP"})
    assert draft.status_code == 201, draft.json
    chat = practice.client.post(f"/api/v1/clients/{client['id']}/conversations",
                                headers=therapist.headers, json={})
    assert chat.status_code == 201, chat.json
    said = practice.client.post(f"/api/v1/conversations/{chat.json['id']}/messages",
                                headers=therapist.headers,
                                json={"content": f"Was bedeutet {secret} bei {first}?"})
    assert said.status_code == 201, said.json
    # A refused attempt that names the client (a security event).
    stranger = practice.add_member()
    assert practice.client.get(f"/api/v1/clients/{client['id']}",
                               headers=stranger.headers).status_code == 404
    return {"client": client, "session": record, "note": note.json,
            "conversation": chat.json}


def test_erasure_leaves_no_trace_and_spares_the_neighbour(
        make_practice: Any, admin_conn: psycopg.Connection[Any]) -> None:
    practice = make_practice()
    therapist = practice.add_member()
    gone = _seed_everything(practice, therapist, "Wiebke", "Quastenberg", "Zauberwort7")
    kept = _seed_everything(practice, therapist, "Hannelore", "Brennecke", "Kennwort3")
    ended = _patch(practice, gone["client"]["id"], {"treatment_ended_on": PAST_END,
                                                    "status": "discharged"})
    assert ended.status_code == 200
    # The client's export and the practice's (which holds every client) are files.
    client_export = _wait(practice, _export(practice, f"/api/v1/clients/{gone['client']['id']}"
                                                      "/exports"))
    practice_export = _wait(practice, _export(practice, "/api/v1/admin/tenant/exports"))
    assert client_export["status"] == practice_export["status"] == "ready"
    assert practice.client.get(client_export["download_url"]).status_code == 200
    ids = [gone[k]["id"] for k in ("client", "session", "note", "conversation")]
    ids.append(client_export["id"])  # (the practice export's id names no client)
    needles = [*ids, "Wiebke", "Quastenberg", "wiebke@example.org", "Zauberwort7",
               "1979-08-17"]
    found = _scan(admin_conn, practice.id, needles)
    assert any(f.startswith("file ") and "Zauberwort7" in f for f in found), found

    erased = _erase(practice, gone["client"]["id"])
    assert erased.status_code == 200, erased.json
    counts = erased.json["record_counts"]
    assert counts["therapy_sessions"] == 1 and counts["notes"] == 2
    assert counts["conversations"] == 1 and counts["conversation_messages"] == 2
    assert erased.json["events_repointed"] > 5

    assert _scan(admin_conn, practice.id, needles[:-1]) == []
    # The old download link is refused; the exports are gone.
    assert_error(practice.client.get(client_export["download_url"]), 404, "not_found")
    for export in (client_export, practice_export):
        assert_error(practice.client.get(f"/api/v1/exports/{export['id']}",
                                         headers=practice.admin.headers), 404, "not_found")
    # The neighbour is whole.
    assert practice.client.get(f"/api/v1/clients/{kept['client']['id']}/sessions",
                               headers=therapist.headers).json[0]["transcript"] \
        .startswith("T: Kennwort3")
    notes = practice.client.get(f"/api/v1/sessions/{kept['session']['id']}/notes",
                                headers=therapist.headers).json
    assert len(notes) == 2
    msgs = practice.client.get(
        f"/api/v1/conversations/{kept['conversation']['id']}/messages",
        headers=therapist.headers).json
    assert len(msgs) == 2
    # The trail names the tombstone where it named the client's records.
    tombstone = erased.json["id"]
    trail = practice.client.get(f"/api/v1/admin/audit-events?resource_id={tombstone}",
                                headers=practice.admin.headers).json
    actions = {e["action"] for e in trail}
    assert {"client.create", "session.create", "note.sign", "client.erase"} <= actions
    refusals = practice.client.get(
        f"/api/v1/admin/security-events?resource_id={tombstone}",
        headers=practice.admin.headers).json
    assert len(refusals) == 1
    # The ledger keeps its rows (tokens were used by the erased client's AI calls).
    used = admin_conn.execute("SELECT count(*) FROM public.llm_usage WHERE tenant_id = %s",
                              (practice.id,)).fetchone()
    assert used is not None and used[0] >= 4


def test_the_app_role_cannot_forge_an_erasure_or_a_correction(
        make_practice: Any, app_role_conn: psycopg.Connection[Any]) -> None:
    """Only the database's erasure trigger writes tombstones and re-points the trail, and
    only for the client being deleted; amendments keep the database's time."""
    practice = make_practice()
    client = practice.create_client()
    schema = schema_name(practice.id)

    def enter() -> None:
        app_role_conn.execute("SELECT set_config('app.tenant_id', %s, true), "
                              "set_config('search_path', %s, true)",
                              (str(practice.id), f"{schema}, public"))

    attempts = [
        ("INSERT INTO erasure_tombstones (erased_by, reason, record_counts) "
         "VALUES ('x', 'legal_order', '{}')", psycopg.errors.InsufficientPrivilege),
        ("UPDATE erasure_tombstones SET reason = 'legal_order'",
         psycopg.errors.InsufficientPrivilege),
        ("INSERT INTO note_amendments (note_id, content, reason, author_id, created_at) "
         "VALUES (gen_random_uuid(), '{}', 'x', 'x', '2001-01-01')",
         psycopg.errors.InsufficientPrivilege),
        ("UPDATE audit_events SET resource_ids = '{}'", psycopg.errors.InsufficientPrivilege),
        # A client row is deleted only as an erasure (the trigger refuses otherwise).
        (f"DELETE FROM clients WHERE id = '{client['id']}'", psycopg.errors.RaiseException),
    ]
    for statement, refused in attempts:
        with pytest.raises(refused), app_role_conn.transaction():
            enter()
            app_role_conn.execute(statement)
    with pytest.raises(psycopg.errors.UndefinedFunction):
        app_role_conn.execute("SELECT public.repoint_erased_records(%s, %s)",
                              ([uuid.uuid4()], uuid.uuid4()))
    app_role_conn.rollback()
    assert practice.client.get(f"/api/v1/clients/{client['id']}",
                               headers=practice.admin.headers).status_code == 200


def test_concurrent_erasures_of_one_client_make_one_tombstone(make_practice: Any,
                                                             app: Any) -> None:
    """Eight admins' erasures of one client at once: one 200 and one tombstone, the rest
    404 (each waits for the first, then finds the client gone)."""
    practice = make_practice()
    client = practice.create_client()
    _session(practice, client["id"])

    def erase(_: int) -> int:
        response = app.test_client().delete(
            f"/api/v1/clients/{client['id']}", headers=practice.admin.headers,
            json={"confirm": client["id"], "override_retention": "legal_order"})
        return int(response.status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(erase, range(8)))
    assert statuses == [200] + [404] * 7
    trail = practice.client.get("/api/v1/admin/audit-events?action=client.erase",
                                headers=practice.admin.headers).json
    assert len(trail) == 1


def test_erasure_response_and_trail_hold_no_personal_data(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client(first_name="Philippa", last_name="Oderbruch")
    erased = _erase(practice, client["id"])
    assert erased.status_code == 200
    text_ = json.dumps(erased.json)
    assert client["id"] not in text_ and "Philippa" not in text_
    assert set(erased.json) == {"id", "erased_at", "erased_by", "reason", "record_counts",
                                "retain_until", "events_repointed"}

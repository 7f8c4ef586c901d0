"""Data exports (GDPR Art. 15/20 and a whole practice), end to end.

Real PostgreSQL, the local storage backend of the test app, the worker thread pool, and
Debian's chromium for the rendered record. Consents and amendments are inserted as the
database owner in the tenant's context (their APIs are built elsewhere).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, text

from api import create_app
from api.exports.operations import HEADINGS, purge_expired_exports
from storage.base import tenant_container
from tenancy.context import enter_as_platform, open_session
from tests.api.test_docs_browser import CHROMIUM, CHROMIUM_ARGS, PageWatch
from tests.conftest import Practice, app_config, assert_error

SESSION = {"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
           "modality": "video"}
SCRIPT = ('<script>document.title="pwned";window.__pwned=1</script>'
          '<img src="x" onerror="window.__pwned=2">')


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


def _export(practice: Practice, path: str) -> str:
    response = practice.client.post(path, headers=practice.admin.headers)
    body = _ok(response, 202)
    assert body["status"] == "pending" and set(body) == {"id", "status"}
    assert response.headers["Location"] == f"/api/v1/exports/{body['id']}"
    return str(body["id"])


def _wait(practice: Practice, export_id: str, *, client: Any = None,
          timeout: float = 30.0) -> dict[str, Any]:
    """Poll the export until it is ready or failed."""
    deadline = time.monotonic() + timeout
    while True:
        body = _ok((client or practice.client).get(f"/api/v1/exports/{export_id}",
                                                   headers=practice.admin.headers))
        if body["status"] in ("ready", "failed"):
            return dict(body)
        assert time.monotonic() < deadline, f"export still {body['status']} after {timeout}s"
        time.sleep(0.05)


def _download(practice: Practice, export: dict[str, Any]) -> zipfile.ZipFile:
    """The ready export's ZIP, through its link; its size and hash as reported."""
    response = practice.client.get(export["download_url"])  # the link is the credential
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="clinai-{export["kind"]}-export-{export["id"]}.zip"')
    assert len(response.data) == export["size_bytes"]
    assert hashlib.sha256(response.data).hexdigest() == export["sha256"]
    return zipfile.ZipFile(io.BytesIO(response.data))


def _as_owner(engine: Engine, tenant_id: uuid.UUID, statement: Any,
              params: Any = None) -> None:
    with engine.begin() as conn:
        enter_as_platform(conn, tenant_id)
        conn.execute(statement, params or {})


def _seed(practice: Practice, owner_engine: Engine, **fields: Any) -> dict[str, Any]:
    """A client with two sessions, a draft and a signed (then amended) note, a chat,
    a withdrawn and a current consent. Returns the ids."""
    c, h = practice.client, practice.admin.headers
    client = practice.create_client(
        first_name="Klara", last_name="Kästner", date_of_birth="1984-03-02",
        contact={"email": "klara@example.org", "phone": "+49 30 1234567",
                 "address": "Lindenstraße 5, 10969 Berlin"}, **fields)
    cid = client["id"]
    # The consent create_client recorded is withdrawn, then given again (before the chat:
    # a withdrawal deletes the client's conversations).
    assert c.delete(f"/api/v1/clients/{cid}/consents/ai_assistance", headers=h).status_code \
        == 204
    _ok(c.post(f"/api/v1/clients/{cid}/consents", headers=h,
               json={"purpose": "ai_assistance", "document_reference": "Bogen 2026"}), 201)
    consent_ids = [uuid.UUID(k["id"]) for k in reversed(
        _ok(c.get(f"/api/v1/clients/{cid}/consents", headers=h), 200))]
    sessions = [_ok(c.post(f"/api/v1/clients/{cid}/sessions", headers=h, json={
        **SESSION, "started_at": f"2026-11-{10 + i}T09:00:00+01:00",
        "transcript": f"Transkript {i}: schläft besser, Ängste im Büro."}), 201)
        for i in range(2)]
    draft = _ok(c.post(f"/api/v1/sessions/{sessions[0]['id']}/notes", headers=h, json={
        "format": "SOAP", "content": {"subjective": "Entwurf", "plan": "weiter"}}), 201)
    signed = _ok(c.post(f"/api/v1/sessions/{sessions[1]['id']}/notes", headers=h, json={
        "format": "DAP", "content": {"data": "Daten", "assessment": "Einschätzung",
                                     "plan": "Plan alt"}}), 201)
    etag = c.post(f"/api/v1/notes/{signed['id']}/sign", headers=h).headers["ETag"]
    conversation = _ok(c.post(f"/api/v1/clients/{cid}/conversations", headers=h), 201)
    reply = _ok(c.post(f"/api/v1/conversations/{conversation['id']}/messages", headers=h,
                       json={"content": "Wie gehe ich mit der Vermeidung um?"}), 201)
    amended = _ok(c.post(f"/api/v1/notes/{signed['id']}/amendments",
                         headers={**h, "If-Match": etag},
                         json={"content": {"plan": "Plan neu"}, "reason": "Tippfehler im Plan"}),
                  201)
    amendment_id = uuid.UUID(amended["amendments"][0]["id"])
    return {"client": cid, "sessions": sessions, "draft": draft, "signed": signed,
            "conversation": conversation, "reply": reply, "consents": consent_ids,
            "amendment": amendment_id}


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def test_a_client_export_holds_everything_the_api_shows(make_practice, owner_engine):
    practice = make_practice(name="Praxis Export")
    c, h = practice.client, practice.admin.headers
    seeded = _seed(practice, owner_engine)
    cid = seeded["client"]
    neighbour = practice.create_client(first_name="Norbert", last_name="Nachbar")
    _ok(c.post(f"/api/v1/clients/{neighbour['id']}/sessions", headers=h,
               json={**SESSION, "transcript": "Nachbars Geheimnis"}), 201)
    stranger_practice = make_practice(name="Andere Praxis")
    stranger = stranger_practice.create_client(first_name="Sven", last_name="Fremd")

    # What the API shows (these reads go into the access log).
    shown_client = _ok(c.get(f"/api/v1/clients/{cid}", headers=h))
    _ok(c.get("/api/v1/clients", headers=h))  # names the neighbour too
    shown_sessions = _ok(c.get(f"/api/v1/clients/{cid}/sessions", headers=h))
    shown_notes = {s["id"]: _ok(c.get(f"/api/v1/sessions/{s['id']}/notes", headers=h))
                   for s in shown_sessions}
    shown_conversations = _ok(c.get(f"/api/v1/clients/{cid}/conversations", headers=h))
    shown_messages = {x["id"]: _ok(c.get(f"/api/v1/conversations/{x['id']}/messages",
                                         headers=h)) for x in shown_conversations}
    # Restricted (Art. 18): still exported to an admin (Art. 15 applies).
    _as_owner(owner_engine, practice.id, text(
        "UPDATE clients SET restricted_at = now(), restricted_by = :by, "
        "restriction_reason = 'Widerspruch', treatment_ended_on = '2026-01-31' "
        "WHERE id = :id"), {"by": practice.admin.sub, "id": cid})

    export_id = _export(practice, f"/api/v1/clients/{cid}/exports")
    ready = _wait(practice, export_id)
    assert ready["status"] == "ready" and ready["error"] is None, ready
    assert ready["kind"] == "client" and ready["client_id"] == cid
    assert _when(ready["expires_at"]) - _when(ready["created_at"]) == dt.timedelta(days=30)
    archive = _download(practice, ready)
    assert sorted(archive.namelist()) == ["data.json", "record.html"]
    raw = archive.read("data.json")
    data = json.loads(raw)

    assert list(data) == ["format", "exported_at", "practice", "client", "consents",
                          "sessions", "conversations", "ai_usage", "exports", "access_log"]
    assert data["format"] == "clinai.client-export/1"
    assert data["practice"] == {"id": str(practice.id), "name": "Praxis Export"}
    client = data["client"]
    for key in ("id", "first_name", "last_name", "date_of_birth", "contact",
                "assigned_therapist_id", "status"):
        assert client[key] == shown_client[key], key
    assert _when(client["created_at"]) == _when(shown_client["created_at"])
    assert client["restriction_reason"] == "Widerspruch" and client["restricted_at"]
    assert client["treatment_ended_on"] == "2026-01-31"
    assert client["retain_until"] == "2036-01-31"  # RECORD_RETENTION_YEARS = 10

    assert [x["id"] for x in data["consents"]] == [str(i) for i in seeded["consents"]]
    assert data["consents"][0]["withdrawn_at"] and data["consents"][1]["withdrawn_at"] is None

    exported_sessions = {s["id"]: s for s in data["sessions"]}
    assert set(exported_sessions) == {s["id"] for s in shown_sessions}
    assert [s["started_at"] for s in data["sessions"]] == sorted(
        s["started_at"] for s in data["sessions"])
    for shown in shown_sessions:
        exported = exported_sessions[shown["id"]]
        assert exported["transcript"] == shown["transcript"]
        assert _when(exported["started_at"]) == _when(shown["started_at"])
        assert {n["id"] for n in exported["notes"]} == {n["id"] for n in shown_notes[shown["id"]]}
        for note in shown_notes[shown["id"]]:
            (out,) = [n for n in exported["notes"] if n["id"] == note["id"]]
            assert out["content"] == note["content"]
            for key in ("format", "status", "author_id", "signed_by"):
                assert out[key] == note[key], key
    signed = next(n for s in data["sessions"] for n in s["notes"]
                  if n["id"] == seeded["signed"]["id"])
    assert signed["status"] == "signed" and signed["signed_at"]
    assert signed["amendments"] == [{
        "id": str(seeded["amendment"]), "content": {"plan": "Plan neu"},
        "reason": "Tippfehler im Plan", "author_id": practice.admin.sub,
        "created_at": signed["amendments"][0]["created_at"]}]
    assert signed["original_content"]["plan"] == "Plan alt"
    assert signed["content"] == {"data": "Daten", "assessment": "Einschätzung",
                                 "plan": "Plan neu"}
    draft = next(n for s in data["sessions"] for n in s["notes"]
                 if n["id"] == seeded["draft"]["id"])
    assert draft["amendments"] == [] and draft["original_content"] == draft["content"]

    assert [x["id"] for x in data["conversations"]] == [x["id"] for x in shown_conversations]
    for conversation in data["conversations"]:
        shown = shown_messages[conversation["id"]]
        assert [(m["id"], m["role"], m["content"], m["author_id"])
                for m in conversation["messages"]] == [
            (m["id"], m["role"], m["content"], m["author_id"])
            for m in sorted(shown, key=lambda m: m["role"] != "user")]
    usage = seeded["reply"]["usage"]
    assert data["ai_usage"] == {"ai_drafted_notes": 0, "chat_questions": 1, "chat_replies": 1,
                                "prompt_tokens": usage["prompt_tokens"],
                                "completion_tokens": usage["completion_tokens"]}
    assert [e["id"] for e in data["exports"]] == [export_id]

    log = data["access_log"]
    seen = {(e["action"], tuple(e["resource_ids"])) for e in log}
    session_ids = tuple(s["id"] for s in shown_sessions)
    assert ("client.read", (cid,)) in seen
    assert ("client.list", (cid,)) in seen  # the neighbour's id is not in this client's log
    assert ("session.list", session_ids) in seen
    assert ("conversation.list", (shown_conversations[0]["id"],)) in seen
    assert ("export.create", (export_id, cid)) in seen
    assert {e["action"] for e in log} >= {"client.create", "session.create", "note.create",
                                          "note.sign", "note.list", "conversation.create",
                                          "conversation.message"}
    assert [e["occurred_at"] for e in log] == sorted(e["occurred_at"] for e in log)
    assert all(e["actor_id"] == practice.admin.sub for e in log)

    body = raw.decode()
    for absent in (neighbour["id"], "Nachbar", "Nachbars Geheimnis", stranger["id"], "Fremd",
                   str(stranger_practice.id)):
        assert absent not in body, absent
    page = archive.read("record.html").decode()
    assert "Tippfehler im Plan" in page and "Lindenstraße 5" in page
    assert "Nachbar" not in page

    # Issuing the link was audited.
    events = _ok(c.get(f"/api/v1/admin/audit-events?resource_id={export_id}", headers=h))
    assert {e["action"] for e in events} == {"export.create", "export.read"}


def test_download_links_are_short_lived_and_cannot_be_altered(app, make_practice):
    practice = make_practice()
    cid = practice.create_client()["id"]
    ready = _wait(practice, _export(practice, f"/api/v1/clients/{cid}/exports"))
    issued = _when(ready["download_expires_at"])
    now = dt.datetime.now(dt.UTC)
    assert now < issued <= now + dt.timedelta(minutes=15)
    url = ready["download_url"]
    assert url.startswith("/api/v1/downloads/")
    assert practice.client.get(url).status_code == 200
    token = url.rsplit("/", 1)[1]
    payload, mac = token.split(".")
    # Point the token at another blob of the same container: the MAC no longer fits.
    fields = json.loads(_unb64(payload))
    forged = _b64(json.dumps({**fields, "n": "exports/other.zip"},
                             separators=(",", ":"), sort_keys=True).encode())
    for bad in (f"{forged}.{mac}", f"{payload}.{mac[:-3]}abc"):
        assert_error(practice.client.get(f"/api/v1/downloads/{bad}"), 404,
                     "download_invalid")
    backend = app.extensions["clinai_storage"]
    expired = backend.signer.sign(tenant_container(practice.id), f"exports/{ready['id']}.zip",
                                  "export.zip", now - dt.timedelta(seconds=1))
    assert_error(practice.client.get(f"/api/v1/downloads/{expired}"), 410, "download_expired")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_only_the_practices_admins_may_export(app, make_practice, admin_conn):
    practice = make_practice()
    therapist = practice.add_member("therapist")
    c = practice.client
    cid = practice.create_client(assigned_therapist_id=therapist.sub)["id"]
    assert_error(c.post(f"/api/v1/clients/{cid}/exports", headers=therapist.headers), 403,
                 "role_forbidden")
    assert_error(c.post("/api/v1/admin/tenant/exports", headers=therapist.headers), 403,
                 "role_forbidden")
    export_id = _export(practice, f"/api/v1/clients/{cid}/exports")
    assert_error(c.get(f"/api/v1/exports/{export_id}", headers=therapist.headers), 403,
                 "role_forbidden")
    other = make_practice(name="Fremde Praxis")
    assert_error(c.post(f"/api/v1/clients/{cid}/exports", headers=other.admin.headers), 404,
                 "not_found")
    assert_error(c.get(f"/api/v1/exports/{export_id}", headers=other.admin.headers), 404,
                 "not_found")
    assert_error(c.post(f"/api/v1/clients/{uuid.uuid4()}/exports",
                        headers=practice.admin.headers), 404, "not_found")
    assert_error(c.get(f"/api/v1/exports/{uuid.uuid4()}", headers=practice.admin.headers),
                 404, "not_found")
    # Refused attempts are security events of the caller's practice.
    refused = _ok(c.get("/api/v1/admin/security-events", headers=other.admin.headers))
    assert {(e["status"], e["error"]) for e in refused} == {(404, "not_found")}
    ready = _wait(practice, export_id)
    assert ready["status"] == "ready"

    # Past its retention: 410, and `purge` deletes the file and the row.
    admin_conn.execute(f'UPDATE "t_{practice.id.hex}".data_exports '
                       "SET expires_at = now() - interval '1 second' WHERE id = %s",
                       (export_id,))
    assert_error(c.get(f"/api/v1/exports/{export_id}", headers=practice.admin.headers), 410,
                 "export_expired")
    backend = app.extensions["clinai_storage"]
    container = tenant_container(practice.id)
    assert f"exports/{export_id}.zip" in backend.list(container, "exports/")
    with app.app_context():
        db, _actor = open_session(app.extensions["clinai_db"].sessions, practice.id,
                                  practice.admin.sub)
        try:
            assert purge_expired_exports(
                db, lambda name: backend.delete(container, name)) == 1
            db.commit()
        finally:
            db.close()
    assert f"exports/{export_id}.zip" not in backend.list(container, "exports/")
    # The row stays (the practice's record of the answer): still 410, never a 404.
    assert_error(c.get(f"/api/v1/exports/{export_id}", headers=practice.admin.headers), 410,
                 "export_expired")


def test_a_practice_export_holds_every_client_members_and_settings(make_practice,
                                                                   owner_engine):
    practice = make_practice(name="Praxis Umzug")
    therapist = practice.add_member("therapist")
    clients = [practice.create_client(first_name=f"Kl{i}", last_name=f"Ient{i}",
                                      assigned_therapist_id=therapist.sub) for i in range(3)]
    _ok(practice.client.post(f"/api/v1/clients/{clients[0]['id']}/sessions",
                             headers=practice.admin.headers,
                             json={**SESSION, "transcript": "Sitzung eins"}), 201)
    _as_owner(owner_engine, practice.id, text(
        "INSERT INTO practice_settings (ai_consent_required, record_retention_years) "
        "VALUES (false, 12)"))
    other = make_practice(name="Nicht diese Praxis")
    outsider = other.create_client(first_name="Otto", last_name="Außenseiter")

    export_id = _export(practice, "/api/v1/admin/tenant/exports")
    ready = _wait(practice, export_id)
    assert ready["status"] == "ready" and ready["kind"] == "practice"
    assert ready["client_id"] is None
    archive = _download(practice, ready)
    ids = sorted(c["id"] for c in clients)
    assert sorted(archive.namelist()) == sorted(
        ["practice.json", "index.html",
         *(f"clients/{cid}/{name}" for cid in ids for name in ("data.json", "record.html"))])
    meta = json.loads(archive.read("practice.json"))
    assert meta["format"] == "clinai.practice-export/1"
    assert meta["practice"] == {"id": str(practice.id), "name": "Praxis Umzug"}
    assert meta["settings"] == {"ai_consent_required": False, "record_retention_years": 12,
                                "record_retention_years_configured": 12}
    assert {(m["user_id"], m["role"]) for m in meta["members"]} == {
        (practice.admin.sub, "admin"), (therapist.sub, "therapist")}
    assert meta["clients"] == ids
    index = archive.read("index.html").decode()
    assert all(f'href="clients/{cid}/record.html"' in index for cid in ids)
    first = json.loads(archive.read(f"clients/{clients[0]['id']}/data.json"))
    assert first["client"]["first_name"] == "Kl0"
    assert [s["transcript"] for s in first["sessions"]] == ["Sitzung eins"]
    everything = b"".join(archive.read(name) for name in archive.namelist())
    for absent in (outsider["id"].encode(), "Außenseiter".encode(), str(other.id).encode()):
        assert absent not in everything
    events = _ok(practice.client.get(f"/api/v1/admin/audit-events?resource_id={export_id}",
                                     headers=practice.admin.headers))
    assert [e["action"] for e in events][-1] == "export.create"


@pytest.fixture
def broken_storage_app(database_url: str, issuer: Any, tmp_path: Path) -> Iterator[Flask]:
    """The app over the same database, its storage root a file: every write fails."""
    root = tmp_path / "storage-is-a-file"
    root.write_text("not a directory")
    application = create_app(app_config(database_url, issuer, STORAGE_LOCAL_ROOT=str(root)))
    yield application
    application.extensions["clinai_exports"].shutdown()
    application.extensions["clinai_db"].dispose()


def test_storage_down_fails_the_export_with_a_code(broken_storage_app, make_practice):
    practice = make_practice()
    cid = practice.create_client()["id"]
    client = broken_storage_app.test_client()
    response = client.post(f"/api/v1/clients/{cid}/exports", headers=practice.admin.headers)
    export_id = _ok(response, 202)["id"]
    failed = _wait(practice, export_id, client=client)
    assert failed["status"] == "failed" and failed["error"] == "storage_unavailable"
    assert failed["download_url"] is None and failed["size_bytes"] is None
    assert failed["sha256"] is None and failed["finished_at"]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
def test_record_html_renders_every_section_and_runs_no_script(make_practice, owner_engine,
                                                              tmp_path):
    from playwright.sync_api import sync_playwright

    practice = make_practice()
    seeded = _seed(practice, owner_engine)
    _ok(practice.client.post(f"/api/v1/clients/{seeded['client']}/sessions",
                             headers=practice.admin.headers,
                             json={**SESSION, "transcript": SCRIPT}), 201)
    ready = _wait(practice, _export(practice, f"/api/v1/clients/{seeded['client']}/exports"))
    _download(practice, ready).extractall(tmp_path)
    page_url = (tmp_path / "record.html").as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            watch = PageWatch(page)
            page.goto(page_url)
            assert page.evaluate("document.documentElement.lang") == "de"
            for heading in HEADINGS.values():
                assert page.get_by_role("heading", name=heading, exact=True).is_visible(), \
                    heading
            transcripts = page.locator("#sessions .text").all_inner_texts()
            assert SCRIPT in transcripts
            assert "Tippfehler im Plan" in page.inner_text("#amendments")
            assert page.evaluate("window.__pwned") is None
            assert page.title() != "pwned"
            assert page.locator("script").count() == 0
            assert page.locator("#sessions img").count() == 0
            assert set(watch.requests) <= {page_url}  # nothing fetched from anywhere
            assert watch.problems == []
        finally:
            browser.close()

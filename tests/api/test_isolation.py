"""The isolation matrix: every tenant-scoped route x every outsider.

Outsiders: another practice's admin, a therapist of the same practice who is not
assigned to the client, a revoked member (still holding a valid token), and any
member of a suspended practice. No data crosses, and the status says only what the
caller may know: 404 for records they can't see, 403 when they can't act at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class World:
    practice: Any
    other: Any
    assigned: Any
    unassigned: Any
    revoked: Any
    client: dict[str, Any]
    session: dict[str, Any]
    note: dict[str, Any]
    conversation: dict[str, Any]
    etags: dict[str, str]


@pytest.fixture
def world(make_practice, app):
    practice, other = make_practice("Praxis A"), make_practice("Praxis B")
    assigned = practice.add_member("therapist")
    unassigned = practice.add_member("therapist")
    revoked = practice.add_member("therapist")
    c = practice.client
    client = practice.create_client(assigned_therapist_id=assigned.sub)
    session = c.post(f"/api/v1/clients/{client['id']}/sessions", headers=practice.admin.headers,
                     json={"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
                           "modality": "in_person", "transcript": "Confidential words."}).json
    note = c.post(f"/api/v1/sessions/{session['id']}/notes", headers=practice.admin.headers,
                  json={"format": "free", "content": {"text": "Secret note."}}).json
    conversation = c.post(f"/api/v1/clients/{client['id']}/conversations",
                          headers=practice.admin.headers, json={}).json
    other.create_client(first_name="Other", last_name="Person")
    etags = {
        kind: c.get(path, headers=practice.admin.headers).headers["ETag"]
        for kind, path in (("client", f"/api/v1/clients/{client['id']}"),
                           ("session", f"/api/v1/sessions/{session['id']}"),
                           ("note", f"/api/v1/notes/{note['id']}"))
    }
    gone = c.delete(f"/api/v1/admin/members/{revoked.sub}", headers=practice.admin.headers)
    assert gone.status_code == 204
    return World(practice, other, assigned, unassigned, revoked, client, session, note,
                 conversation, etags)


def _routes(w: World) -> list[tuple[str, str, dict[str, Any] | None, str | None]]:
    """(method, path, json body, etag kind) of every route that names one of A's records."""
    cid, sid, nid, vid = w.client["id"], w.session["id"], w.note["id"], w.conversation["id"]
    session_body = {"started_at": "2026-11-21T09:00:00+01:00", "duration_minutes": 30,
                    "modality": "video"}
    return [
        ("GET", f"/api/v1/clients/{cid}", None, None),
        ("PATCH", f"/api/v1/clients/{cid}", {"status": "inactive"}, "client"),
        ("GET", f"/api/v1/clients/{cid}/sessions", None, None),
        ("POST", f"/api/v1/clients/{cid}/sessions", session_body, None),
        ("GET", f"/api/v1/sessions/{sid}", None, None),
        ("PATCH", f"/api/v1/sessions/{sid}", {"duration_minutes": 10}, "session"),
        ("GET", f"/api/v1/sessions/{sid}/notes", None, None),
        ("POST", f"/api/v1/sessions/{sid}/notes", {"format": "free", "content": {"text": "x"}},
         None),
        ("GET", f"/api/v1/notes/{nid}", None, None),
        ("PATCH", f"/api/v1/notes/{nid}", {"content": {"text": "changed"}}, "note"),
        ("POST", f"/api/v1/notes/{nid}/sign", None, None),
        # The AI routes: refused before anything reaches the model or the meter.
        ("POST", f"/api/v1/sessions/{sid}/note-drafts", {"format": "SOAP"}, None),
        ("GET", f"/api/v1/clients/{cid}/conversations", None, None),
        ("POST", f"/api/v1/clients/{cid}/conversations", {}, None),
        ("GET", f"/api/v1/conversations/{vid}/messages", None, None),
        ("POST", f"/api/v1/conversations/{vid}/messages", {"content": "Who is this?"}, None),
    ]


def _call(w: World, actor: Any, method: str, path: str, body: Any, etag: str | None) -> Any:
    headers = dict(actor.headers)
    if etag:
        headers["If-Match"] = w.etags[etag]
    return w.practice.client.open(path, method=method, json=body, headers=headers)


OUTSIDERS = {
    # who -> (expected status, expected error code)
    "other_tenant_admin": (404, "not_found"),
    "unassigned_therapist": (404, "not_found"),
    "revoked_member": (403, "not_a_member"),
}


def _actor(w: World, who: str) -> Any:
    return {"other_tenant_admin": w.other.admin, "unassigned_therapist": w.unassigned,
            "revoked_member": w.revoked}[who]


def _assert_untouched(w: World) -> None:
    c, h = w.practice.client, w.practice.admin.headers
    client = c.get(f"/api/v1/clients/{w.client['id']}", headers=h).json
    assert (client["status"], client["version"]) == ("active", 1)
    sessions = c.get(f"/api/v1/clients/{w.client['id']}/sessions", headers=h).json
    assert [s["id"] for s in sessions] == [w.session["id"]]
    assert sessions[0]["duration_minutes"] == 50
    notes = c.get(f"/api/v1/sessions/{w.session['id']}/notes", headers=h).json
    assert [(n["id"], n["status"], n["content"]) for n in notes] == [
        (w.note["id"], "draft", {"text": "Secret note."})]
    conversations = c.get(f"/api/v1/clients/{w.client['id']}/conversations", headers=h).json
    assert [v["id"] for v in conversations] == [w.conversation["id"]]
    assert c.get(f"/api/v1/conversations/{w.conversation['id']}/messages", headers=h).json == []
    assert c.get("/api/v1/admin/usage", headers=h).json["calls"] == 0  # nothing metered


@pytest.mark.parametrize("who", list(OUTSIDERS))
def test_outsiders_cannot_reach_records(world, who):
    status, error = OUTSIDERS[who]
    actor = _actor(world, who)
    for method, path, body, etag in _routes(world):
        response = _call(world, actor, method, path, body, etag)
        assert (response.status_code, response.json["error"]) == (status, error), (method, path)
        assert "Secret" not in response.get_data(as_text=True)
        assert "Confidential" not in response.get_data(as_text=True)
    _assert_untouched(world)


def test_assigned_therapist_reaches_every_record(world):
    """The positive control: the same routes work for the assigned therapist."""
    for method, path, body, etag in _routes(world):
        if method in ("PATCH", "POST"):
            continue  # reads only: writes would change the expected state of other checks
        response = _call(world, world.assigned, method, path, body, etag)
        assert response.status_code == 200, (method, path, response.json)


@pytest.mark.parametrize("who", ["admin", "assigned"])
def test_suspended_tenant_is_closed_to_everyone(world, app, who):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["tenancy", "suspend", str(world.practice.id)]).exit_code == 0
    try:
        actor = world.practice.admin if who == "admin" else world.assigned
        for method, path, body, etag in _routes(world):
            response = _call(world, actor, method, path, body, etag)
            assert (response.status_code, response.json["error"]) == (403, "tenant_inactive")
        for path in ("/api/v1/clients", "/api/v1/tenant", "/api/v1/admin/members"):
            response = world.practice.client.get(path, headers=actor.headers)
            assert (response.status_code, response.json["error"]) == (403, "tenant_inactive")
    finally:
        assert runner.invoke(args=["tenancy", "activate", str(world.practice.id)]).exit_code == 0
    _assert_untouched(world)


@pytest.mark.parametrize("who", ["other_tenant_admin", "unassigned_therapist"])
def test_lists_show_only_visible_records(world, who):
    actor = _actor(world, who)
    listed = world.practice.client.get("/api/v1/clients", headers=actor.headers)
    assert listed.status_code == 200
    assert world.client["id"] not in {c["id"] for c in listed.json}
    if who == "other_tenant_admin":
        assert [c["last_name"] for c in listed.json] == ["Person"]
        tenant = world.practice.client.get("/api/v1/tenant", headers=actor.headers).json
        assert tenant["id"] == str(world.other.id)
    else:
        assert listed.json == []


def test_admin_routes_are_tenant_bound(world):
    c, outsider = world.practice.client, world.other.admin
    members = c.get("/api/v1/admin/members", headers=outsider.headers).json
    assert {m["user_id"] for m in members} == {outsider.sub}
    patched = c.patch(f"/api/v1/admin/members/{world.assigned.sub}", json={"role": "admin"},
                      headers=outsider.headers)
    assert patched.status_code == 404
    deleted = c.delete(f"/api/v1/admin/members/{world.assigned.sub}", headers=outsider.headers)
    assert deleted.status_code == 404
    usage = c.get("/api/v1/admin/usage", headers=outsider.headers).json
    assert usage["calls"] == 0 and usage["by_feature"] == {}  # B's own, empty
    events = c.get("/api/v1/admin/audit-events", headers=outsider.headers).json
    seen = {rid for e in events for rid in e["resource_ids"]}
    assert world.client["id"] not in seen
    # A's member is untouched.
    mine = c.get("/api/v1/admin/members", headers=world.practice.admin.headers).json
    assert {m["user_id"]: m["role"] for m in mine}[world.assigned.sub] == "therapist"


def test_therapist_cannot_use_admin_routes(world):
    c = world.practice.client
    for method, path, body in (("GET", "/api/v1/admin/members", None),
                               ("GET", "/api/v1/admin/audit-events", None),
                               ("GET", "/api/v1/admin/usage", None),
                               ("POST", "/api/v1/admin/invitations",
                                {"email": "x@example.org", "role": "admin"}),
                               ("DELETE", f"/api/v1/admin/members/{world.unassigned.sub}", None)):
        response = c.open(path, method=method, json=body, headers=world.assigned.headers)
        assert (response.status_code, response.json["error"]) == (403, "role_forbidden")


def test_client_assignment_rules(world):
    c = world.practice.client
    # A therapist's new client is assigned to them, and they can't assign to someone else.
    own = c.post("/api/v1/clients", headers=world.assigned.headers,
                 json={"first_name": "Ida", "last_name": "Neu"})
    assert own.status_code == 201
    assert own.json["assigned_therapist_id"] == world.assigned.sub
    other = c.post("/api/v1/clients", headers=world.assigned.headers,
                   json={"first_name": "Ida", "last_name": "Neu",
                         "assigned_therapist_id": world.unassigned.sub})
    assert (other.status_code, other.json["error"]) == (403, "role_forbidden")
    # Assigning to someone outside the practice is a validation error, even for admins.
    stranger = c.post("/api/v1/clients", headers=world.practice.admin.headers,
                      json={"first_name": "Ida", "last_name": "Neu",
                            "assigned_therapist_id": world.other.admin.sub})
    assert stranger.status_code == 422
    assert "assigned_therapist_id" in stranger.json["errors"]["json"]

"""Issue 10, 7: only the note's author or the client's assigned therapist signs a note."""

from __future__ import annotations

from typing import Any

SESSION = {"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
           "modality": "in_person"}
NOTE = {"format": "SOAP", "content": {"subjective": "Slept better."}}


def _draft(practice: Any, author: Any, client_id: str) -> dict[str, Any]:
    c = practice.client
    session = c.post(f"/api/v1/clients/{client_id}/sessions", json=SESSION,
                     headers=author.headers)
    assert session.status_code == 201, session.json
    note = c.post(f"/api/v1/sessions/{session.json['id']}/notes", json=NOTE,
                  headers=author.headers)
    assert note.status_code == 201, note.json
    return dict(note.json)


def test_who_may_sign(make_practice: Any) -> None:
    practice = make_practice()
    c, admin = practice.client, practice.admin
    anna, ben = practice.add_member("therapist"), practice.add_member("therapist")
    client = practice.create_client(assigned_therapist_id=anna.sub)

    by_anna = _draft(practice, anna, client["id"])
    refused = c.post(f"/api/v1/notes/{by_anna['id']}/sign", headers=admin.headers)
    assert (refused.status_code, refused.json["error"]) == (403, "not_note_author")
    hidden = c.post(f"/api/v1/notes/{by_anna['id']}/sign", headers=ben.headers)
    assert (hidden.status_code, hidden.json["error"]) == (404, "not_found")
    assert c.get(f"/api/v1/notes/{by_anna['id']}", headers=anna.headers).json["status"] == "draft"
    signed = c.post(f"/api/v1/notes/{by_anna['id']}/sign", headers=anna.headers)
    assert (signed.status_code, signed.json["signed_by"]) == (200, anna.sub)

    # The admin's own draft about Anna's client: the admin (author) or Anna may sign it.
    by_admin = _draft(practice, admin, client["id"])
    signed = c.post(f"/api/v1/notes/{by_admin['id']}/sign", headers=anna.headers)
    assert (signed.status_code, signed.json["signed_by"]) == (200, anna.sub)
    by_admin = _draft(practice, admin, client["id"])
    signed = c.post(f"/api/v1/notes/{by_admin['id']}/sign", headers=admin.headers)
    assert (signed.status_code, signed.json["signed_by"]) == (200, admin.sub)

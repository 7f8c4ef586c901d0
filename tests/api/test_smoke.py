"""The clinical-record happy path, end to end through the API."""

from __future__ import annotations


def test_practice_records_roundtrip(make_practice):
    practice = make_practice()
    c, h = practice.client, practice.admin.headers
    client = practice.create_client(date_of_birth="1985-04-12")
    got = c.get(f"/api/v1/clients/{client['id']}", headers=h)
    assert got.status_code == 200
    assert got.json["last_name"] == "Mustermann"

    session = c.post(f"/api/v1/clients/{client['id']}/sessions", headers=h, json={
        "started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50, "modality": "video"})
    assert session.status_code == 201
    note = c.post(f"/api/v1/sessions/{session.json['id']}/notes", headers=h,
                  json={"format": "DAP", "content": {"data": "d", "plan": "p"}})
    assert note.status_code == 201
    assert (note.json["status"], note.json["source"]) == ("draft", "manual")

    signed = c.post(f"/api/v1/notes/{note.json['id']}/sign", headers=h)
    assert signed.status_code == 200
    assert signed.json["status"] == "signed"
    assert signed.json["signed_by"] == practice.admin.sub

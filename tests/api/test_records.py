"""Clinical records: validation, the error shape, ETags, signing, pagination, audit."""

from __future__ import annotations

import json

import pytest

SESSION = {"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
           "modality": "video"}


@pytest.fixture
def practice(make_practice):
    return make_practice()


def _assert_error(response, status, error):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert set(body) >= {"code", "status", "message", "error"}
    assert (body["code"], body["error"]) == (status, error)
    return body


@pytest.mark.parametrize(("body", "field"), [
    ({"first_name": "A"}, "last_name"),
    ({"first_name": "", "last_name": "B"}, "first_name"),
    ({"first_name": "A", "last_name": "B", "tenant_id": "00000000-0000-0000-0000-000000000000"},
     "tenant_id"),
    ({"first_name": "A", "last_name": "B", "id": "00000000-0000-0000-0000-000000000000"}, "id"),
    ({"first_name": "A", "last_name": "B", "version": 7}, "version"),
    ({"first_name": "A", "last_name": "B", "status": "deleted"}, "status"),
    ({"first_name": "A", "last_name": "B", "date_of_birth": "yesterday"}, "date_of_birth"),
    ({"first_name": "A", "last_name": "B", "contact": {"email": "not-an-email"}}, "contact"),
    ({"first_name": "A", "last_name": "B", "contact": {"fax": "1"}}, "contact"),
    ({"first_name": "A" * 256, "last_name": "B"}, "first_name"),
    ({"first_name": 5, "last_name": "B"}, "first_name"),
])
def test_client_validation(practice, body, field):
    response = practice.client.post("/api/v1/clients", json=body, headers=practice.admin.headers)
    error = _assert_error(response, 422, "validation_failed")
    assert field in error["errors"]["json"]
    listed = practice.client.get("/api/v1/clients", headers=practice.admin.headers)
    assert listed.json == []  # nothing was written


@pytest.mark.parametrize(("data", "content_type", "status"), [
    ("{not json", "application/json", 400),
    ("[1, 2]", "application/json", 422),
    ('"text"', "application/json", 422),
    ("null", "application/json", 422),
])
def test_malformed_bodies_are_4xx(practice, data, content_type, status):
    response = practice.client.post("/api/v1/clients", data=data, content_type=content_type,
                                    headers=practice.admin.headers)
    assert response.status_code == status
    assert response.json["code"] == status
    assert "error" in response.json


def test_oversized_body_is_413(practice):
    huge = {"first_name": "A", "last_name": "B", "contact": {"address": "x" * (2 * 1024 * 1024)}}
    response = practice.client.post("/api/v1/clients", json=huge, headers=practice.admin.headers)
    _assert_error(response, 413, "payload_too_large")


def test_unknown_ids_and_routes(practice):
    c, h = practice.client, practice.admin.headers
    _assert_error(c.get("/api/v1/clients/5b8f2c9e-1b0e-4a43-9a6f-0d6f4c7b1a11", headers=h),
                  404, "not_found")
    _assert_error(c.get("/api/v1/clients/not-a-uuid", headers=h), 404, "not_found")
    _assert_error(c.get("/api/v1/nothing-here", headers=h), 404, "not_found")
    _assert_error(c.delete("/api/v1/clients", headers=h), 405, "method_not_allowed")


def test_patch_requires_current_etag(practice):
    c, h = practice.client, practice.admin.headers
    client = practice.create_client()
    path = f"/api/v1/clients/{client['id']}"
    _assert_error(c.patch(path, json={"status": "inactive"}, headers=h),
                  428, "precondition_required")
    etag = c.get(path, headers=h).headers["ETag"]
    changed = c.patch(path, json={"status": "inactive"}, headers={**h, "If-Match": etag})
    assert changed.status_code == 200
    assert changed.json["status"] == "inactive"
    assert changed.headers["ETag"] != etag
    _assert_error(c.patch(path, json={"status": "active"}, headers={**h, "If-Match": etag}),
                  412, "precondition_failed")
    assert c.get(path, headers=h).json["status"] == "inactive"
    # Invalid changes are refused whole.
    bad = c.patch(path, json={"status": "active", "first_name": ""},
                  headers={**h, "If-Match": changed.headers["ETag"]})
    _assert_error(bad, 422, "validation_failed")
    assert c.get(path, headers=h).json["status"] == "inactive"


def test_session_and_note_rules(practice):
    c, h = practice.client, practice.admin.headers
    client = practice.create_client()
    for bad, field in (({**SESSION, "duration_minutes": 0}, "duration_minutes"),
                       ({**SESSION, "modality": "telepathy"}, "modality"),
                       ({**SESSION, "started_at": "2026-11-20T09:00:00"}, "started_at"),
                       ({**SESSION, "client_id": client["id"]}, "client_id")):
        response = c.post(f"/api/v1/clients/{client['id']}/sessions", json=bad, headers=h)
        assert field in _assert_error(response, 422, "validation_failed")["errors"]["json"]
    session = c.post(f"/api/v1/clients/{client['id']}/sessions", json=SESSION, headers=h).json
    notes = f"/api/v1/sessions/{session['id']}/notes"
    wrong_section = c.post(notes, json={"format": "SOAP", "content": {"data": "x"}}, headers=h)
    _assert_error(wrong_section, 422, "validation_failed")
    forged = c.post(notes, json={"format": "free", "content": {"text": "x"}, "status": "signed"},
                    headers=h)
    _assert_error(forged, 422, "validation_failed")
    note = c.post(notes, json={"format": "SOAP", "content": {"subjective": "s"}}, headers=h).json
    path = f"/api/v1/notes/{note['id']}"
    etag = c.get(path, headers=h).headers["ETag"]
    merged = c.patch(path, json={"content": {"plan": "p"}}, headers={**h, "If-Match": etag})
    assert merged.json["content"] == {"subjective": "s", "plan": "p"}
    signed = c.post(f"{path}/sign", headers=h)
    assert signed.json["status"] == "signed"
    _assert_error(c.post(f"{path}/sign", headers=h), 409, "note_signed")
    _assert_error(c.patch(path, json={"content": {"plan": "later"}},
                          headers={**h, "If-Match": signed.headers["ETag"]}), 409, "note_signed")
    assert c.get(path, headers=h).json["content"] == {"subjective": "s", "plan": "p"}


def test_pagination(practice):
    for i in range(25):
        practice.create_client(last_name=f"N{i:02d}")
    c, h = practice.client, practice.admin.headers
    first = c.get("/api/v1/clients?page_size=10", headers=h)
    assert [x["last_name"] for x in first.json] == [f"N{i:02d}" for i in range(10)]
    assert '"total": 25' in first.headers["X-Pagination"]
    third = c.get("/api/v1/clients?page=3&page_size=10", headers=h)
    assert [x["last_name"] for x in third.json] == [f"N{i:02d}" for i in range(20, 25)]
    _assert_error(c.get("/api/v1/clients?page_size=100000", headers=h), 422, "validation_failed")
    _assert_error(c.get("/api/v1/clients?status=weird", headers=h), 422, "validation_failed")
    default = c.get("/api/v1/clients", headers=h)  # 20 per page unless asked otherwise
    assert [x["last_name"] for x in default.json] == [f"N{i:02d}" for i in range(20)]
    assert json.loads(default.headers["X-Pagination"]) == {
        "total": 25, "total_pages": 2, "first_page": 1, "last_page": 2, "page": 1,
        "next_page": 2}
    last = c.get("/api/v1/clients?page=2", headers=h)
    assert json.loads(last.headers["X-Pagination"])["previous_page"] == 1
    assert len(last.json) == 5


def test_every_clinical_access_is_audited_without_clinical_text(practice):
    c, h = practice.client, practice.admin.headers
    client = practice.create_client(first_name="Quentin", last_name="Quenstedt",
                                    ai_consent=False)  # no consent.record event here
    c.get(f"/api/v1/clients/{client['id']}", headers=h)
    c.get("/api/v1/clients", headers=h)
    session = c.post(f"/api/v1/clients/{client['id']}/sessions", headers=h,
                     json={**SESSION, "transcript": "Felt anxious about work."}).json
    c.get(f"/api/v1/sessions/{session['id']}", headers=h)
    events = c.get("/api/v1/admin/audit-events", headers=h)
    assert events.status_code == 200
    actions = [(e["action"], e["resource_ids"]) for e in events.json]
    assert actions == [
        ("session.read", [session["id"]]),
        ("session.create", [session["id"]]),
        ("client.list", [client["id"]]),
        ("client.read", [client["id"]]),
        ("client.create", [client["id"]]),
    ]
    assert all(e["actor_id"] == practice.admin.sub for e in events.json)
    text = events.get_data(as_text=True)
    for secret in ("Quenstedt", "Quentin", "anxious"):
        assert secret not in text
    only_client = c.get(f"/api/v1/admin/audit-events?resource_id={client['id']}", headers=h)
    assert {e["action"] for e in only_client.json} == {"client.list", "client.read",
                                                       "client.create"}


def test_refused_requests_write_nothing(practice):
    """A 4xx rolls the request back: no audit event for a refused write either."""
    c, h = practice.client, practice.admin.headers
    c.post("/api/v1/clients", json={"first_name": "A"}, headers=h)
    assert c.get("/api/v1/admin/audit-events", headers=h).json == []


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/clients", {"first_name": "Erika\u0000", "last_name": "B"}),
    ("GET", "/api/v1/clients?page=99999999999999999999", None),
])
def test_unstorable_values_are_422_not_500(practice, method, path, body):
    response = practice.client.open(path, method=method, json=body,
                                    headers=practice.admin.headers)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.json["code"] == 422
    assert practice.client.get("/api/v1/clients", headers=practice.admin.headers).json == []


@pytest.mark.parametrize("started_at", ["0001-01-01T00:00:00+14:00",
                                        "9999-12-31T23:59:59-14:00"])
def test_implausible_session_times_are_422(practice, started_at):
    client = practice.create_client()
    response = practice.client.post(f"/api/v1/clients/{client['id']}/sessions",
                                    headers=practice.admin.headers,
                                    json={**SESSION, "started_at": started_at})
    _assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize("period", ["0000-01", "9999-12", "2026-13", "26-01"])
def test_usage_period_is_validated(practice, period):
    response = practice.client.get(f"/api/v1/admin/usage?period={period}",
                                   headers=practice.admin.headers)
    _assert_error(response, 422, "validation_failed")


def test_therapist_cannot_leave_a_client_unassigned(practice):
    therapist = practice.add_member("therapist")
    c = practice.client
    created = c.post("/api/v1/clients", headers=therapist.headers,
                     json={"first_name": "A", "last_name": "B", "assigned_therapist_id": None})
    assert created.status_code == 201
    assert created.json["assigned_therapist_id"] == therapist.sub
    path = f"/api/v1/clients/{created.json['id']}"
    etag = c.get(path, headers=therapist.headers).headers["ETag"]
    unassign = c.patch(path, json={"assigned_therapist_id": None},
                       headers={**therapist.headers, "If-Match": etag})
    _assert_error(unassign, 403, "role_forbidden")


def test_signing_at_the_same_moment_signs_once(make_practice):
    """Concurrent signatures: one wins; the others get a documented 409 or 412."""
    import threading

    practice = make_practice()
    client = practice.create_client()
    h = practice.admin.headers
    session = practice.client.post(f"/api/v1/clients/{client['id']}/sessions", headers=h, json={
        "started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
        "modality": "video"}).json
    note = practice.client.post(f"/api/v1/sessions/{session['id']}/notes", headers=h,
                                json={"format": "free", "content": {"text": "Met."}}).json
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def sign() -> None:
        barrier.wait()
        statuses.append(practice.client.post(f"/api/v1/notes/{note['id']}/sign",
                                             headers=h).status_code)

    threads = [threading.Thread(target=sign) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412}, statuses
    signed = practice.client.get(f"/api/v1/notes/{note['id']}", headers=h).json
    assert signed["status"] == "signed" and signed["version"] == 2


@pytest.mark.parametrize(("if_match", "status"), [
    ("{etag}", 200),
    ("*", 412),  # issue 10: a record's change must name the version it read
    ('"other", *', 412),
    ("{etag}, *", 200),
    ('"other", {etag}', 200),
    ('"other",{etag}', 200),
    ("{bare}", 412),  # unquoted: not the ETag as served
    ("W/{etag}", 412),  # weak tags never match If-Match
    ('"other"', 412),
    (",", 412),
    ('"{bare}', 412),  # no closing quote
    ("{etag} junk", 412),
    ("", 428),
    ("   ", 428),
])
def test_if_match_forms(make_practice, if_match, status):
    practice = make_practice()
    client = practice.create_client()
    h = practice.admin.headers
    etag = practice.client.get(f"/api/v1/clients/{client['id']}", headers=h).headers["ETag"]
    header = if_match.format(etag=etag, bare=etag.strip('"'))
    response = practice.client.patch(f"/api/v1/clients/{client['id']}", json={"status": "inactive"},
                                     headers={**h, "If-Match": header})
    assert response.status_code == status, (header, response.json)

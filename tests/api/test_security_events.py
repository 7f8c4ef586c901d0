"""Issue 10, finding 6a: refused attempts on records leave a trace an admin can list."""

from __future__ import annotations

import json
import uuid
from typing import Any

SECRET = "Hildegard Zwetschke cried about her divorce"


def _events(practice: Any, **query: str) -> list[dict[str, Any]]:
    response = practice.client.get("/api/v1/admin/security-events", query_string=query,
                                   headers=practice.admin.headers)
    assert response.status_code == 200, response.json
    return list(response.json)


def test_refusals_are_recorded_without_clinical_text(make_practice: Any) -> None:
    practice, other = make_practice("Eigene"), make_practice("Fremde")
    c = practice.client
    tom, anna = practice.add_member("therapist"), practice.add_member("therapist")
    annas = practice.create_client(by=anna, first_name="Hildegard", last_name="Zwetschke")
    foreign = other.create_client()

    attempts = [
        # another therapist's client: 404
        (tom, "GET", f"/api/v1/clients/{annas['id']}", None, 404, "not_found"),
        # another practice's client: 404 in the caller's own practice
        (tom, "PATCH", f"/api/v1/clients/{foreign['id']}", {"last_name": SECRET}, 404, "not_found"),
        # a therapist on an admin route: 403
        (tom, "GET", "/api/v1/admin/audit-events", None, 403, "role_forbidden"),
    ]
    for who, method, path, body, status, error in attempts:
        response = c.open(path, method=method, json=body,
                          headers={**who.headers, "If-Match": '"x.1"'})
        assert (response.status_code, response.json["error"]) == (status, error)
    # A stale write (412) by the assigned therapist.
    stale = c.patch(f"/api/v1/clients/{annas['id']}", json={"status": "inactive"},
                    headers={**anna.headers, "If-Match": '"stale.1"'})
    assert stale.status_code == 412

    events = _events(practice)
    assert [(e["actor_id"], e["method"], e["status"], e["error"]) for e in events] == [
        (anna.sub, "PATCH", 412, "precondition_failed"),
        (tom.sub, "GET", 403, "role_forbidden"),
        (tom.sub, "PATCH", 404, "not_found"),
        (tom.sub, "GET", 404, "not_found"),
    ]
    assert events[-1]["route"] == "/api/v1/clients/<uuid:client_id>"
    assert events[-1]["resource_ids"] == [annas["id"]]
    assert events[-2]["resource_ids"] == [foreign["id"]]
    assert all(e["actor_role"] == "therapist" for e in events)
    text = json.dumps(events)
    assert "Zwetschke" not in text and "divorce" not in text
    # The refused PATCH wrote nothing, and the other practice sees none of this.
    assert other.client.get(f"/api/v1/clients/{foreign['id']}",
                            headers=other.admin.headers).json["last_name"] != SECRET
    assert _events(other) == []
    assert _events(practice, actor_id=anna.sub)[0]["status"] == 412
    assert [e["status"] for e in _events(practice, resource_id=annas["id"])] == [412, 404]


def test_successes_and_unauthenticated_calls_leave_no_security_event(make_practice: Any
                                                                     ) -> None:
    practice = make_practice()
    client = practice.create_client()
    c = practice.client
    assert c.get(f"/api/v1/clients/{client['id']}",
                 headers=practice.admin.headers).status_code == 200
    assert c.get(f"/api/v1/clients/{uuid.uuid4()}").status_code == 401
    assert _events(practice) == []
    # A refusal's own audit event is not kept: the request's work was rolled back.
    assert c.get(f"/api/v1/clients/{uuid.uuid4()}",
                 headers=practice.admin.headers).status_code == 404
    audit = c.get("/api/v1/admin/audit-events?action=client.read",
                  headers=practice.admin.headers).json
    assert [e["resource_ids"] for e in audit] == [[client["id"]]]
    assert [e["status"] for e in _events(practice)] == [404]

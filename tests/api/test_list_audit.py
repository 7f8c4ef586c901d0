"""Clinical lists write their audit event in the page query itself (``fetch_page``).

Each list read appends exactly one event naming the ids of the page it returned, in
page order, with the actor, role and request id; an empty page and a page past the end
name no record; a refused list writes none.
"""

from __future__ import annotations

import json

import pytest

SESSION = {"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
           "modality": "video"}


@pytest.fixture
def practice(make_practice):
    return make_practice()


def _events(practice):
    response = practice.client.get("/api/v1/admin/audit-events?page_size=100",
                                   headers=practice.admin.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def _list(practice, path, actor=None, request_id="req-list-1"):
    actor = actor or practice.admin
    response = practice.client.get(path, headers={**actor.headers, "X-Request-ID": request_id})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_client_list_event_names_the_page_in_order(practice):
    for i in (3, 1, 4, 0, 2):
        practice.create_client(first_name="F", last_name=f"L{i}")
    page = _list(practice, "/api/v1/clients?page=2&page_size=2")
    assert [c["last_name"] for c in page.json] == ["L2", "L3"]
    assert json.loads(page.headers["X-Pagination"])["total"] == 5
    newest = _events(practice)[0]
    assert newest["action"] == "client.list"
    assert newest["resource_type"] == "client"
    assert newest["resource_ids"] == [c["id"] for c in page.json]
    assert (newest["actor_id"], newest["actor_role"]) == (practice.admin.sub, "admin")
    # The server's id (as in the response header); the caller's id only beside it.
    assert newest["request_id"] == page.headers["X-Request-ID"] != "req-list-1"
    assert newest["client_request_id"] == "req-list-1"


def test_each_list_read_is_one_event(practice):
    practice.create_client()
    before = len(_events(practice))
    _list(practice, "/api/v1/clients")
    _list(practice, "/api/v1/clients", request_id="req-list-2")
    events = _events(practice)
    assert len(events) == before + 2
    assert [e["client_request_id"] for e in events[:2]] == ["req-list-2", "req-list-1"]


def test_empty_and_past_the_end_pages_name_no_record(practice):
    _list(practice, "/api/v1/clients")
    assert _events(practice)[0]["resource_ids"] == []
    practice.create_client()
    past = _list(practice, "/api/v1/clients?page=5&page_size=1", request_id="req-past")
    assert past.json == []
    assert json.loads(past.headers["X-Pagination"])["total"] == 1
    newest = _events(practice)[0]
    assert (newest["request_id"], newest["client_request_id"], newest["resource_ids"]) == (
        past.headers["X-Request-ID"], "req-past", [])


def test_therapist_list_names_only_their_clients(practice):
    therapist = practice.add_member("therapist")
    mine = practice.create_client(by=therapist, last_name="Mine")
    practice.create_client(last_name="Other")
    page = _list(practice, "/api/v1/clients", actor=therapist)
    assert [c["id"] for c in page.json] == [mine["id"]]
    newest = _events(practice)[0]
    assert (newest["actor_id"], newest["actor_role"]) == (therapist.sub, "therapist")
    assert newest["resource_ids"] == [mine["id"]]


def test_session_note_and_conversation_lists(practice):
    c, h = practice.client, practice.admin.headers
    client = practice.create_client()
    sessions = [c.post(f"/api/v1/clients/{client['id']}/sessions", headers=h,
                       json={**SESSION, "started_at": f"2026-11-2{d}T09:00:00+01:00"}).json
                for d in (1, 3, 2)]
    listed = _list(practice, f"/api/v1/clients/{client['id']}/sessions")
    assert [s["started_at"][:10] for s in listed.json] == ["2026-11-23", "2026-11-22",
                                                          "2026-11-21"]  # newest first
    event = _events(practice)[0]
    assert (event["action"], event["resource_type"]) == ("session.list", "therapy_session")
    assert event["resource_ids"] == [s["id"] for s in listed.json]
    assert sorted(event["resource_ids"]) == sorted(s["id"] for s in sessions)

    note = c.post(f"/api/v1/sessions/{sessions[0]['id']}/notes", headers=h,
                  json={"format": "free", "content": {"text": "x"}}).json
    _list(practice, f"/api/v1/sessions/{sessions[0]['id']}/notes")
    event = _events(practice)[0]
    assert (event["action"], event["resource_ids"]) == ("note.list", [note["id"]])

    conversation = c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h,
                          json={}).json
    _list(practice, f"/api/v1/clients/{client['id']}/conversations")
    event = _events(practice)[0]
    assert (event["action"], event["resource_ids"]) == ("conversation.list",
                                                        [conversation["id"]])


def test_a_refused_list_writes_no_event(practice, make_practice):
    other = make_practice("Other practice")
    foreign = other.create_client()
    before = len(_events(practice))
    response = practice.client.get(f"/api/v1/clients/{foreign['id']}/sessions",
                                   headers=practice.admin.headers)
    assert response.status_code == 404
    bad = practice.client.get("/api/v1/clients?page_size=0", headers=practice.admin.headers)
    assert bad.status_code == 422
    assert len(_events(practice)) == before


def test_an_engine_without_the_audit_hook_fails_closed(app):
    """Records never leave unaudited: without the hook, fetch_page raises after the query."""
    import uuid

    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from api.db import get_db_config
    from api.pagination import ReadAudit, fetch_page
    from models import Tenant
    from tenancy.actor import Actor
    from tenancy.database import app_url

    engine = create_engine(app_url(get_db_config(app)))  # not create_app_engine: no hooks
    audit = ReadAudit(Actor(tenant_id=uuid.uuid4(), user_id="u", role="admin"),
                      "client.list", "client")
    try:
        with Session(engine) as db, pytest.raises(RuntimeError, match="audit hook"):
            fetch_page(db, select(Tenant), order_by=(Tenant.id,), offset=0, limit=5,
                       audit=audit)
    finally:
        engine.dispose()


def test_page_statements_built_once_still_scope_each_caller(practice):
    """The client list's statements are cached per shape: values must not stick to them."""
    first, second = practice.add_member("therapist"), practice.add_member("therapist")
    mine = {practice.create_client(by=first, last_name=f"A{i}")["id"] for i in range(3)}
    theirs = {practice.create_client(by=second, last_name=f"B{i}")["id"] for i in range(2)}
    for actor, expected in ((first, mine), (second, theirs), (first, mine)):
        for query in ("", "?status=active"):
            page = _list(practice, f"/api/v1/clients{query}", actor=actor)
            assert {c["id"] for c in page.json} == expected
            assert json.loads(page.headers["X-Pagination"])["total"] == len(expected)
        past = _list(practice, "/api/v1/clients?page=9&page_size=1", actor=actor)
        assert past.json == []
        assert json.loads(past.headers["X-Pagination"])["total"] == len(expected)
    everyone = _list(practice, "/api/v1/clients?status=active")
    assert {c["id"] for c in everyone.json} == mine | theirs
    assert _list(practice, "/api/v1/clients?status=inactive").json == []


def test_a_page_far_past_the_end_is_empty_not_an_error(practice):
    """Offsets beyond 32 bits (page 2**31 of 100) still answer with an empty page."""
    practice.create_client()
    page = _list(practice, f"/api/v1/clients?page={2**31}&page_size=100")
    assert page.json == []
    assert json.loads(page.headers["X-Pagination"])["total"] == 1

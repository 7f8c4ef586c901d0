"""Amendments of signed notes (§ 630f(1) BGB): a correction keeps the original visible."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask import Flask
from psycopg import errors
from sqlalchemy import Engine, event, text

from tenancy.context import enter_as_platform
from tests.conftest import Actor, Practice, assert_error

SESSION = {"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
           "modality": "video"}
ORIGINAL = {"subjective": "Slept badly.", "objective": "Tired, on time.",
            "assessment": "Depressive episode, moderate.", "plan": "Weekly sessions."}
ENTER = ("SELECT set_config('search_path', %(schema)s, true), "
         "set_config('app.tenant_id', %(tenant)s, true)")


def _session(practice: Practice, by: Actor, client_id: str) -> str:
    response = practice.client.post(f"/api/v1/clients/{client_id}/sessions", json=SESSION,
                                    headers=by.headers)
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def _note(practice: Practice, by: Actor, session_id: str, *, sign: bool = True) -> Any:
    """A note by ``by``; signed (the response, with its ETag) unless ``sign`` is false."""
    c = practice.client
    note = c.post(f"/api/v1/sessions/{session_id}/notes", headers=by.headers,
                  json={"format": "SOAP", "content": ORIGINAL})
    assert note.status_code == 201, note.json
    if not sign:
        return note
    signed = c.post(f"/api/v1/notes/{note.json['id']}/sign", headers=by.headers)
    assert signed.status_code == 200, signed.json
    return signed


def _amend(practice: Practice, by: Actor, note_id: str, etag: str | None,
           body: Any) -> Any:
    headers = {**by.headers, **({"If-Match": etag} if etag is not None else {})}
    return practice.client.post(f"/api/v1/notes/{note_id}/amendments", json=body,
                                headers=headers)


@pytest.fixture
def signed(make_practice: Callable[..., Practice]) -> tuple[Practice, Actor, str, Any]:
    """A practice, its therapist, her client's session and a note she signed there."""
    practice = make_practice()
    anna = practice.add_member("therapist")
    client = practice.create_client(by=anna)
    session_id = _session(practice, anna, client["id"])
    return practice, anna, session_id, _note(practice, anna, session_id)


def test_amend_twice_keeps_the_original(signed: Any, owner_engine: Engine) -> None:
    practice, anna, session_id, note = signed
    c, note_id = practice.client, note.json["id"]
    assert note.json["original_content"] == note.json["content"] == ORIGINAL
    assert note.json["amendments"] == []

    first = _amend(practice, anna, note_id, note.headers["ETag"], {
        "content": {"assessment": "Depressive episode, mild."},
        "reason": "Diagnose korrigiert"})
    assert first.status_code == 201, first.json
    assert first.headers["ETag"] != note.headers["ETag"]
    assert first.json["version"] == note.json["version"] + 1
    second = _amend(practice, anna, note_id, first.headers["ETag"], {
        "content": {"assessment": "Adjustment disorder.", "plan": "Fortnightly sessions."},
        "reason": "Befund nach Rücksprache ergänzt"})
    assert second.status_code == 201, second.json
    assert second.headers["ETag"] not in (first.headers["ETag"], note.headers["ETag"])

    shown = c.get(f"/api/v1/notes/{note_id}", headers=anna.headers)
    assert shown.headers["ETag"] == second.headers["ETag"]
    body = shown.json
    assert body == second.json
    assert body["content"] == {**ORIGINAL, "assessment": "Adjustment disorder.",
                               "plan": "Fortnightly sessions."}
    assert body["original_content"] == ORIGINAL
    assert (body["status"], body["signed_by"], body["signed_at"]) == (
        "signed", anna.sub, note.json["signed_at"])
    amendments = body["amendments"]
    assert [(a["content"], a["reason"], a["author_id"]) for a in amendments] == [
        ({"assessment": "Depressive episode, mild."}, "Diagnose korrigiert", anna.sub),
        ({"assessment": "Adjustment disorder.", "plan": "Fortnightly sessions."},
         "Befund nach Rücksprache ergänzt", anna.sub)]
    assert amendments[0]["created_at"] <= amendments[1]["created_at"]
    assert len({a["id"] for a in amendments}) == 2

    listed = c.get(f"/api/v1/sessions/{session_id}/notes", headers=anna.headers)
    assert listed.status_code == 200
    assert listed.json == [body]

    # The row keeps the text as signed.
    with owner_engine.begin() as conn:
        enter_as_platform(conn, practice.id)
        stored = conn.execute(text("SELECT content FROM notes WHERE id = :id"),
                              {"id": note_id}).scalar_one()
        rows = conn.execute(text("SELECT count(*) FROM note_amendments WHERE note_id = :id"),
                            {"id": note_id}).scalar_one()
    assert stored == ORIGINAL
    assert rows == 2


def test_the_app_role_cannot_change_or_remove_an_amendment(
        signed: Any, app_role_conn: psycopg.Connection[Any]) -> None:
    practice, anna, _, note = signed
    amended = _amend(practice, anna, note.json["id"], note.headers["ETag"],
                     {"content": {"plan": "Pause."}, "reason": "Plan korrigiert"})
    assert amended.status_code == 201, amended.json
    amendment_id = amended.json["amendments"][0]["id"]
    conn = app_role_conn
    conn.execute(ENTER, {"schema": f"t_{practice.id.hex}", "tenant": str(practice.id)})
    # The app role sees the row in the practice's context: the refusals below are about
    # the privilege, not a row it cannot see.
    assert conn.execute("SELECT reason FROM note_amendments WHERE id = %s",
                        (amendment_id,)).fetchone() == ("Plan korrigiert",)
    for statement in ("UPDATE note_amendments SET reason = 'forged' WHERE id = %s",
                      "UPDATE note_amendments SET content = '{}' WHERE id = %s",
                      "DELETE FROM note_amendments WHERE id = %s"):
        conn.execute("SAVEPOINT s")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement, (amendment_id,))
        conn.execute("ROLLBACK TO SAVEPOINT s")
    conn.rollback()


def test_concurrent_amendments_of_one_version(signed: Any) -> None:
    practice, anna, _, note = signed
    etag = note.headers["ETag"]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def amend(section: str) -> None:
        barrier.wait()
        statuses.append(_amend(practice, anna, note.json["id"], etag, {
            "content": {section: "Corrected."}, "reason": "Korrektur"}).status_code)

    threads = [threading.Thread(target=amend, args=(s,)) for s in ("plan", "objective")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 412], statuses
    shown = practice.client.get(f"/api/v1/notes/{note.json['id']}", headers=anna.headers).json
    assert len(shown["amendments"]) == 1
    assert shown["version"] == note.json["version"] + 1

    # The same stale ETag again: 412, nothing added.
    stale = _amend(practice, anna, note.json["id"], etag,
                   {"content": {"plan": "Again."}, "reason": "Korrektur"})
    assert_error(stale, 412, "precondition_failed")
    again = practice.client.get(f"/api/v1/notes/{note.json['id']}", headers=anna.headers).json
    assert again["amendments"] == shown["amendments"]


def test_preconditions_and_drafts(signed: Any) -> None:
    practice, anna, session_id, note = signed
    body = {"content": {"plan": "Pause."}, "reason": "Plan korrigiert"}
    assert_error(_amend(practice, anna, note.json["id"], None, body),
                 428, "precondition_required")
    assert_error(_amend(practice, anna, note.json["id"], '"other.1"', body),
                 412, "precondition_failed")
    draft = _note(practice, anna, session_id, sign=False)
    refused = _amend(practice, anna, draft.json["id"], draft.headers["ETag"], body)
    assert_error(refused, 409, "note_not_signed")
    # The draft is still changed in place, and served in the same shape.
    patched = practice.client.patch(f"/api/v1/notes/{draft.json['id']}",
                                    json={"content": {"plan": "Pause."}},
                                    headers={**anna.headers, "If-Match": draft.headers["ETag"]})
    assert patched.status_code == 200, patched.json
    assert patched.json["content"] == patched.json["original_content"] == {
        **ORIGINAL, "plan": "Pause."}
    assert patched.json["amendments"] == []
    # The signed note's PATCH points to amendments.
    assert_error(practice.client.patch(
        f"/api/v1/notes/{note.json['id']}", json={"content": {"plan": "x"}},
        headers={**anna.headers, "If-Match": note.headers["ETag"]}), 409, "note_signed")


NESTED = '{"content": {"plan": ' + "[" * 5000 + "]" * 5000 + '}, "reason": "x"}'


@pytest.mark.parametrize(("body", "field"), [
    ({"content": {"plan": "x"}}, "reason"),
    ({"content": {"plan": "x"}, "reason": ""}, "reason"),
    ({"content": {"plan": "x"}, "reason": "   "}, "reason"),
    ({"content": {"plan": "x"}, "reason": "r" * 2001}, "reason"),
    ({"reason": "Korrektur"}, "content"),
    ({"content": {}, "reason": "Korrektur"}, "content"),
    ({"content": {"data": "x"}, "reason": "Korrektur"}, "content"),  # a DAP section
    ({"content": {"plan": "x" * 50_001}, "reason": "Korrektur"}, "content"),
    ({"content": "plan: x", "reason": "Korrektur"}, "content"),
    ({"content": ["plan"], "reason": "Korrektur"}, "content"),
    ({"content": {"plan": {"nested": "x"}}, "reason": "Korrektur"}, "content"),
    ({"content": {"plan": "x"}, "reason": "Korrektur", "author_id": "someone"}, "author_id"),
    ({"content": {"plan": "x"}, "reason": "Korrektur", "created_at": "2020-01-01T00:00:00Z"},
     "created_at"),
    (NESTED, None),
])
def test_invalid_amendments(signed: Any, body: Any, field: str | None) -> None:
    practice, anna, _, note = signed
    headers = {**anna.headers, "If-Match": note.headers["ETag"]}
    path = f"/api/v1/notes/{note.json['id']}/amendments"
    if isinstance(body, str):
        response = practice.client.post(path, data=body, content_type="application/json",
                                        headers=headers)
        assert response.status_code in (400, 422), response.json
        assert_error(response, response.status_code,
                     "bad_request" if response.status_code == 400 else "validation_failed")
    else:
        response = practice.client.post(path, json=body, headers=headers)
        error = assert_error(response, 422, "validation_failed")
        assert field in error["errors"]["json"], error
        if body.get("content") == {"data": "x"}:  # names the section
            assert error["errors"]["json"]["content"] == {"data": ["Unknown section."]}
    shown = practice.client.get(f"/api/v1/notes/{note.json['id']}", headers=anna.headers)
    assert shown.json["amendments"] == []
    assert shown.headers["ETag"] == note.headers["ETag"]


def test_who_may_amend(make_practice: Callable[..., Practice]) -> None:
    practice = make_practice()
    c, admin = practice.client, practice.admin
    anna, ben = practice.add_member("therapist"), practice.add_member("therapist")
    client = practice.create_client(assigned_therapist_id=anna.sub)
    session_id = _session(practice, anna, client["id"])
    note = _note(practice, anna, session_id)
    body = {"content": {"plan": "Pause."}, "reason": "Plan korrigiert"}
    etag = note.headers["ETag"]

    # Unassigned therapist: cannot see it. Another practice's admin: cannot see it either.
    assert_error(_amend(practice, ben, note.json["id"], etag, body), 404, "not_found")
    other = make_practice("Andere Praxis")
    assert_error(_amend(other, other.admin, note.json["id"], etag, body), 404, "not_found")
    assert_error(_amend(practice, anna, str(uuid.uuid4()), etag, body), 404, "not_found")
    # The admin sees it, but is neither author nor assignee.
    assert_error(_amend(practice, admin, note.json["id"], etag, body), 403, "not_note_author")
    assert c.get(f"/api/v1/notes/{note.json['id']}",
                 headers=admin.headers).json["amendments"] == []

    # The admin's own note about Anna's client: the admin (author) and Anna (assignee) may.
    by_admin = _note(practice, admin, session_id)
    by_anna = _amend(practice, anna, by_admin.json["id"], by_admin.headers["ETag"], body)
    assert by_anna.status_code == 201, by_anna.json
    assert by_anna.json["amendments"][0]["author_id"] == anna.sub
    own = _amend(practice, admin, by_admin.json["id"], by_anna.headers["ETag"],
                 {"content": {"plan": "Resume."}, "reason": "Plan erneut korrigiert"})
    assert own.status_code == 201, own.json
    assert [a["author_id"] for a in own.json["amendments"]] == [anna.sub, admin.sub]
    assert own.json["author_id"] == own.json["signed_by"] == admin.sub


def test_restricted_client(make_practice: Callable[..., Practice],
                           owner_engine: Engine) -> None:
    practice = make_practice()
    admin = practice.admin
    client = practice.create_client(assigned_therapist_id=admin.sub)
    note = _note(practice, admin, _session(practice, admin, client["id"]))
    with owner_engine.begin() as conn:
        enter_as_platform(conn, practice.id)
        conn.execute(text(f"UPDATE t_{practice.id.hex}.clients SET restricted_at = now() "
                          "WHERE id = :id"), {"id": client["id"]})
    refused = _amend(practice, admin, note.json["id"], note.headers["ETag"],
                     {"content": {"plan": "Pause."}, "reason": "Plan korrigiert"})
    assert_error(refused, 409, "client_restricted")
    shown = practice.client.get(f"/api/v1/notes/{note.json['id']}", headers=admin.headers)
    assert shown.json["amendments"] == []


def test_amendments_are_audited_without_text(signed: Any) -> None:
    practice, anna, _, note = signed
    amended = _amend(practice, anna, note.json["id"], note.headers["ETag"],
                     {"content": {"plan": "Geheimplan"}, "reason": "Vertraulicher Grund"})
    assert amended.status_code == 201, amended.json
    events = practice.client.get("/api/v1/admin/audit-events?action=note.amend",
                                 headers=practice.admin.headers)
    assert events.status_code == 200, events.json
    assert [(e["action"], e["resource_type"], e["resource_ids"], e["actor_id"])
            for e in events.json] == [
        ("note.amend", "note", [note.json["id"], amended.json["amendments"][0]["id"]],
         anna.sub)]
    everything = practice.client.get("/api/v1/admin/audit-events?page_size=100",
                                     headers=practice.admin.headers).get_data(as_text=True)
    for secret in ("Geheimplan", "Vertraulicher", "Depressive"):
        assert secret not in everything


def test_a_list_loads_amendments_in_one_query(signed: Any, app: Flask) -> None:
    practice, anna, session_id, _ = signed
    for _ in range(3):
        note = _note(practice, anna, session_id)
        assert _amend(practice, anna, note.json["id"], note.headers["ETag"], {
            "content": {"plan": "Pause."}, "reason": "Plan korrigiert"}).status_code == 201
    _note(practice, anna, session_id, sign=False)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = app.extensions["clinai_db"].engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        listed = practice.client.get(f"/api/v1/sessions/{session_id}/notes",
                                     headers=anna.headers)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert listed.status_code == 200
    assert [len(n["amendments"]) for n in listed.json] == [0, 1, 1, 1, 0]
    assert [n["content"]["plan"] for n in listed.json] == [
        "Weekly sessions.", "Pause.", "Pause.", "Pause.", "Weekly sessions."]
    assert sum("note_amendments" in s for s in statements) == 1, statements

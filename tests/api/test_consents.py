"""Consent to AI assistance: recording, withdrawal, the practice setting and the AI gate.

Real PostgreSQL, the LLM simulator for the provider; the ledger (``public.llm_usage``,
``public.llm_budgets``) and the tenant schema are read directly to prove what did not
happen.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Actor, Practice, assert_error

TRANSCRIPT = "T: How was your week? C: Better, I slept well. T: What helped? C: No phone."
AI = "ai_assistance"
STREAM = {"Accept": "text/event-stream"}


def consents_path(client_id: str) -> str:
    return f"/api/v1/clients/{client_id}/consents"


def new_session(practice: Practice, who: Actor, client_id: str) -> dict[str, Any]:
    response = practice.client.post(
        f"/api/v1/clients/{client_id}/sessions", headers=who.headers,
        json={"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
              "modality": "video", "transcript": TRANSCRIPT})
    assert response.status_code == 201, response.json
    return dict(response.json)


def draft(practice: Practice, who: Actor, session_id: str, stream: bool = False) -> Any:
    return practice.client.post(f"/api/v1/sessions/{session_id}/note-drafts",
                                json={"format": "SOAP"},
                                headers={**who.headers, **(STREAM if stream else {})})


def set_consent_required(practice: Practice, on: bool) -> None:
    response = practice.client.patch("/api/v1/admin/settings", headers=practice.admin.headers,
                                     json={"ai_consent_required": on})
    assert response.status_code == 200, response.json
    assert response.json["ai_consent_required"] is on


def ledger(admin_conn: Any, practice: Practice) -> tuple[Any, ...]:
    """The practice's metering rows and budget, and its budget as the admin API shows it."""
    rows = admin_conn.execute(
        "SELECT id, status, prompt_tokens, completion_tokens FROM public.llm_usage "
        "WHERE tenant_id = %s ORDER BY id", (practice.id,)).fetchall()
    budget = admin_conn.execute(
        "SELECT used, reserved FROM public.llm_budgets WHERE tenant_id = %s",
        (practice.id,)).fetchall()
    usage = practice.client.get("/api/v1/admin/usage", headers=practice.admin.headers)
    assert usage.status_code == 200, usage.json
    return tuple(rows), tuple(budget), usage.json["budget"]


def count(admin_conn: Any, practice: Practice, sql: str, *args: Any) -> int:
    row = admin_conn.execute(sql.replace("{schema}", f'"t_{practice.id.hex}"'), args).fetchone()
    assert row is not None
    return int(row[0])


def audit_events(practice: Practice, action: str) -> list[dict[str, Any]]:
    response = practice.client.get(f"/api/v1/admin/audit-events?action={action}",
                                   headers=practice.admin.headers)
    assert response.status_code == 200, response.json
    return list(response.json)


# --- Record, list, withdraw --------------------------------------------------------

def test_record_is_idempotent_listed_and_withdrawn(make_practice: Any, admin_conn: Any) -> None:
    practice = make_practice()
    therapist = practice.add_member()
    client = practice.create_client(by=therapist, ai_consent=False)
    c, h, path = practice.client, therapist.headers, consents_path(client["id"])
    assert c.get(path, headers=h).json == []

    first = c.post(path, headers=h, json={"purpose": AI,
                                          "document_reference": "Einwilligung, Akte S. 4"})
    assert first.status_code == 201, first.json
    consent = first.json
    assert consent["client_id"] == client["id"] and consent["purpose"] == AI
    assert consent["recorded_by"] == therapist.sub
    assert consent["document_reference"] == "Einwilligung, Akte S. 4"
    assert consent["current"] is True
    assert consent["withdrawn_at"] is None and consent["withdrawn_by"] is None
    assert consent["given_at"]

    again = c.post(path, headers=h, json={"purpose": AI})
    assert again.status_code == 200, again.json
    assert again.json == consent  # the current one, unchanged (its reference kept)
    assert count(admin_conn, practice, "SELECT count(*) FROM {schema}.client_consents") == 1

    listed = c.get(path, headers=h)
    assert listed.status_code == 200
    assert listed.json == [consent]

    withdrawn = c.delete(f"{path}/{AI}", headers=h)
    assert withdrawn.status_code == 204, withdrawn.json
    history = c.get(path, headers=h).json
    assert len(history) == 1
    assert history[0]["id"] == consent["id"]
    assert history[0]["withdrawn_at"] and history[0]["withdrawn_by"] == therapist.sub
    assert history[0]["current"] is False

    assert_error(c.delete(f"{path}/{AI}", headers=h), 404, "not_found")

    renewed = c.post(path, headers=h, json={"purpose": AI})
    assert renewed.status_code == 201, renewed.json
    assert renewed.json["id"] != consent["id"] and renewed.json["current"] is True
    history = c.get(path, headers=h).json
    assert [e["id"] for e in history] == [renewed.json["id"], consent["id"]]  # newest first
    assert [e["current"] for e in history] == [True, False]

    record = audit_events(practice, "consent.record")
    assert {tuple(e["resource_ids"]) for e in record} == {
        (consent["id"], client["id"]), (renewed.json["id"], client["id"])}
    assert audit_events(practice, "consent.list")
    withdraw = audit_events(practice, "consent.withdraw")
    assert [e["resource_ids"] for e in withdraw] == [[consent["id"], client["id"]]]
    assert withdraw[0]["actor_id"] == therapist.sub


def test_the_list_is_paginated(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client()
    path = consents_path(client["id"])
    for _ in range(2):
        assert practice.client.delete(f"{path}/{AI}",
                                      headers=practice.admin.headers).status_code == 204
        assert practice.client.post(path, json={"purpose": AI},
                                    headers=practice.admin.headers).status_code == 201
    page = practice.client.get(f"{path}?page=1&page_size=2", headers=practice.admin.headers)
    assert page.status_code == 200
    assert len(page.json) == 2 and page.json[0]["current"] is True
    assert '"total": 3' in page.headers["X-Pagination"]


def test_unknown_purpose_in_the_path_is_not_found(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client()
    response = practice.client.delete(f"{consents_path(client['id'])}/marketing",
                                      headers=practice.admin.headers)
    assert_error(response, 404, "not_found")
    # the real consent is untouched
    assert practice.client.get(consents_path(client["id"]),
                               headers=practice.admin.headers).json[0]["current"] is True


# --- The gate of the AI routes ------------------------------------------------------

def test_ai_routes_refuse_a_client_without_consent_before_anything_is_reserved(
    app: Any, make_practice: Any, admin_conn: Any,
) -> None:
    practice = make_practice()  # a new practice: consent required by default
    therapist = practice.add_member()
    client = practice.create_client(by=therapist, ai_consent=False)
    session = new_session(practice, therapist, client["id"])
    c, h = practice.client, therapist.headers
    # A conversation started while the setting was off, so that its messages can be tried.
    set_consent_required(practice, False)
    conversation = c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h,
                          json={})
    assert conversation.status_code == 201, conversation.json
    set_consent_required(practice, True)

    simulator = app.extensions["clinai_llm_simulator"]
    sent_before, ledger_before = len(simulator.requests), ledger(admin_conn, practice)
    messages = f"/api/v1/conversations/{conversation.json['id']}/messages"

    for stream in (False, True):
        assert_error(draft(practice, therapist, session["id"], stream), 409,
                     "consent_required")
        refused = c.post(messages, json={"content": "What next?"},
                         headers={**h, **(STREAM if stream else {})})
        body = assert_error(refused, 409, "consent_required")
        assert refused.mimetype == "application/json", body
    assert_error(c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h, json={}),
                 409, "consent_required")

    assert len(simulator.requests) == sent_before  # nothing reached the model
    assert ledger(admin_conn, practice) == ledger_before  # nothing reserved or metered
    assert count(admin_conn, practice,
                 "SELECT count(*) FROM {schema}.conversation_messages") == 0
    assert count(admin_conn, practice, "SELECT count(*) FROM {schema}.conversations") == 1
    assert count(admin_conn, practice, "SELECT count(*) FROM {schema}.notes") == 0

    # Refusals are security events of the practice.
    events = c.get("/api/v1/admin/security-events", headers=practice.admin.headers).json
    assert {(e["route"], e["error"]) for e in events} >= {
        ("/api/v1/sessions/<uuid:session_id>/note-drafts", "consent_required"),
        ("/api/v1/clients/<uuid:client_id>/conversations", "consent_required"),
        ("/api/v1/conversations/<uuid:conversation_id>/messages", "consent_required")}

    # With the consent recorded, the same requests work.
    assert c.post(consents_path(client["id"]), headers=h,
                  json={"purpose": AI}).status_code == 201
    drafted = draft(practice, therapist, session["id"])
    assert drafted.status_code == 201, drafted.json
    assert drafted.json["source"] == "ai"
    asked = c.post(messages, json={"content": "What next?"}, headers=h)
    assert asked.status_code == 201, asked.json
    assert len(simulator.requests) == sent_before + 2
    assert ledger(admin_conn, practice) != ledger_before


def test_the_setting_off_lets_a_client_without_consent_use_ai(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client(ai_consent=False)
    session = new_session(practice, practice.admin, client["id"])
    assert_error(draft(practice, practice.admin, session["id"]), 409, "consent_required")

    set_consent_required(practice, False)
    drafted = draft(practice, practice.admin, session["id"])
    assert drafted.status_code == 201, drafted.json
    chat = practice.client.post(f"/api/v1/clients/{client['id']}/conversations",
                                headers=practice.admin.headers)
    assert chat.status_code == 201, chat.json

    set_consent_required(practice, True)
    assert_error(draft(practice, practice.admin, session["id"]), 409, "consent_required")
    assert_error(practice.client.post(
        f"/api/v1/conversations/{chat.json['id']}/messages", json={"content": "Hm?"},
        headers=practice.admin.headers), 409, "consent_required")


def test_an_existing_practice_keeps_ai_without_consent(make_practice: Any,
                                                      admin_conn: Any) -> None:
    """The migration gave each existing practice a settings row with consent off."""
    practice = make_practice()
    admin_conn.execute(f'INSERT INTO "t_{practice.id.hex}".practice_settings '
                       "(tenant_id, ai_consent_required) VALUES (%s, false)", (practice.id,))
    settings = practice.client.get("/api/v1/admin/settings", headers=practice.admin.headers)
    assert settings.json["ai_consent_required"] is False
    client = practice.create_client(ai_consent=False)
    session = new_session(practice, practice.admin, client["id"])
    assert draft(practice, practice.admin, session["id"]).status_code == 201


# --- Withdrawal deletes the AI's work that is not the therapist's record ------------

def test_withdrawal_deletes_conversations_and_unsigned_ai_drafts(
    make_practice: Any, admin_conn: Any,
) -> None:
    practice = make_practice()
    therapist = practice.add_member()
    c, h = practice.client, therapist.headers
    client = practice.create_client(by=therapist)
    other = practice.create_client(by=therapist, first_name="Otto", last_name="Beispiel")
    session = new_session(practice, therapist, client["id"])

    conversations = []
    for owner in (client, client, other):
        made = c.post(f"/api/v1/clients/{owner['id']}/conversations", headers=h, json={})
        assert made.status_code == 201, made.json
        asked = c.post(f"/api/v1/conversations/{made.json['id']}/messages", headers=h,
                       json={"content": "What next?"})
        assert asked.status_code == 201, asked.json
        conversations.append(made.json["id"])
    unsigned = draft(practice, therapist, session["id"]).json
    signed = draft(practice, therapist, session["id"]).json
    assert c.post(f"/api/v1/notes/{signed['id']}/sign", headers=h).status_code == 200
    manual = c.post(f"/api/v1/sessions/{session['id']}/notes", headers=h,
                    json={"format": "free", "content": {"text": "Met."}}).json

    consent_id = c.get(consents_path(client["id"]), headers=h).json[0]["id"]
    assert c.delete(f"{consents_path(client['id'])}/{AI}", headers=h).status_code == 204

    assert c.get(f"/api/v1/clients/{client['id']}/conversations", headers=h).json == []
    for gone in conversations[:2]:
        assert_error(c.get(f"/api/v1/conversations/{gone}/messages", headers=h), 404,
                     "not_found")
    assert count(admin_conn, practice,
                 "SELECT count(*) FROM {schema}.conversation_messages "
                 "WHERE conversation_id = ANY(%s)",
                 [uuid.UUID(i) for i in conversations[:2]]) == 0
    # Another client's conversation stays, with its messages.
    kept = c.get(f"/api/v1/conversations/{conversations[2]}/messages", headers=h)
    assert kept.status_code == 200 and len(kept.json) == 2
    notes = c.get(f"/api/v1/sessions/{session['id']}/notes", headers=h).json
    assert {n["id"] for n in notes} == {signed["id"], manual["id"]}
    assert_error(c.get(f"/api/v1/notes/{unsigned['id']}", headers=h), 404, "not_found")

    withdraw = audit_events(practice, "consent.withdraw")
    assert [e["resource_ids"] for e in withdraw] == [[consent_id, client["id"]]]
    deleted = audit_events(practice, "conversation.delete")
    assert [sorted(e["resource_ids"]) for e in deleted] == [sorted(conversations[:2])]
    assert [e["resource_ids"] for e in audit_events(practice, "note.delete")] == [
        [unsigned["id"]]]
    assert {e["request_id"] for e in withdraw + deleted} == {withdraw[0]["request_id"]}

    # Without consent the client's AI routes are closed again.
    assert_error(draft(practice, therapist, session["id"]), 409, "consent_required")


def test_withdrawal_without_ai_records_writes_only_its_own_event(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client()
    assert practice.client.delete(f"{consents_path(client['id'])}/{AI}",
                                  headers=practice.admin.headers).status_code == 204
    assert len(audit_events(practice, "consent.withdraw")) == 1
    assert audit_events(practice, "conversation.delete") == []
    assert audit_events(practice, "note.delete") == []


# --- Who may, and what is refused ---------------------------------------------------

def test_another_practice_and_an_unassigned_therapist_get_404(make_practice: Any) -> None:
    practice, foreign = make_practice(), make_practice("Andere Praxis")
    owner, stranger = practice.add_member(), practice.add_member()
    client = practice.create_client(by=owner)
    path = consents_path(client["id"])
    for who in (foreign.admin, stranger):
        assert_error(practice.client.get(path, headers=who.headers), 404, "not_found")
        assert_error(practice.client.post(path, json={"purpose": AI}, headers=who.headers),
                     404, "not_found")
        assert_error(practice.client.delete(f"{path}/{AI}", headers=who.headers), 404,
                     "not_found")
    # Nothing changed: the owner's consent is still the only, current one.
    history = practice.client.get(path, headers=owner.headers).json
    assert [e["current"] for e in history] == [True]
    # The admin may act for any client of the practice.
    assert practice.client.delete(f"{path}/{AI}", headers=practice.admin.headers
                                  ).status_code == 204
    events = practice.client.get("/api/v1/admin/security-events",
                                 headers=practice.admin.headers).json
    assert {(e["actor_id"], e["status"]) for e in events
            if e["route"].startswith("/api/v1/clients/<uuid:client_id>/consents")} == {
        (stranger.sub, 404)}


def test_therapists_may_not_see_or_change_the_settings(make_practice: Any) -> None:
    practice = make_practice()
    therapist = practice.add_member()
    assert_error(practice.client.get("/api/v1/admin/settings", headers=therapist.headers),
                 403, "role_forbidden")
    assert_error(practice.client.patch("/api/v1/admin/settings", headers=therapist.headers,
                                       json={"ai_consent_required": False}),
                 403, "role_forbidden")
    assert practice.client.get("/api/v1/admin/settings", headers=practice.admin.headers
                               ).json["ai_consent_required"] is True


@pytest.mark.parametrize(("body", "field"), [
    ({"purpose": "marketing"}, "purpose"),
    ({}, "purpose"),
    ({"purpose": None}, "purpose"),
    ({"purpose": AI, "document_reference": "x" * 300}, "document_reference"),
    ({"purpose": AI, "document_reference": 42}, "document_reference"),
    ({"purpose": AI, "given_at": "2020-01-01T00:00:00Z"}, "given_at"),
    ([{"purpose": AI}], None),
])
def test_malformed_consent_bodies_are_422(make_practice: Any, admin_conn: Any,
                                          body: Any, field: str | None) -> None:
    practice = make_practice()
    client = practice.create_client(ai_consent=False)
    error = assert_error(practice.client.post(consents_path(client["id"]), json=body,
                                              headers=practice.admin.headers),
                         422, "validation_failed")
    if field is not None:
        assert field in error["errors"]["json"], error
    assert count(admin_conn, practice, "SELECT count(*) FROM {schema}.client_consents") == 0


def test_non_json_bodies_are_refused(make_practice: Any) -> None:
    practice = make_practice()
    client = practice.create_client(ai_consent=False)
    path, h = consents_path(client["id"]), practice.admin.headers
    assert_error(practice.client.post(path, data="{purpose", headers=h,
                                      content_type="application/json"), 400, "bad_request")
    assert_error(practice.client.post(path, data="purpose=ai_assistance", headers=h,
                                      content_type="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")
    assert_error(practice.client.patch("/api/v1/admin/settings", data="[", headers=h,
                                       content_type="application/json"), 400, "bad_request")


@pytest.mark.parametrize(("body", "field"), [
    ({"record_retention_years": 5}, "record_retention_years"),
    ({"record_retention_years": 9}, "record_retention_years"),
    ({"record_retention_years": "ten"}, "record_retention_years"),
    ({"record_retention_years": "12"}, "record_retention_years"),
    ({"record_retention_years": 1000}, "record_retention_years"),
    ({"record_retention_years": 12.5}, "record_retention_years"),
    ({"ai_consent_required": "yes"}, "ai_consent_required"),
    ({"ai_consent_required": None}, "ai_consent_required"),
    ({"minimum_record_retention_years": 5}, "minimum_record_retention_years"),
    ({}, "_schema"),
    ([{"record_retention_years": 12}], None),
])
def test_malformed_settings_are_422(make_practice: Any, body: Any, field: str | None) -> None:
    practice = make_practice()
    error = assert_error(practice.client.patch("/api/v1/admin/settings", json=body,
                                               headers=practice.admin.headers),
                         422, "validation_failed")
    if field is not None:
        assert field in error["errors"]["json"], error
    settings = practice.client.get("/api/v1/admin/settings", headers=practice.admin.headers)
    assert settings.json == {"ai_consent_required": True, "record_retention_years": 10,
                             "minimum_record_retention_years": 10}


def test_a_restricted_client(make_practice: Any, admin_conn: Any) -> None:
    """Restricted (GDPR Art. 18): no consent can be recorded or withdrawn (nothing of the
    record changes) and no AI used."""
    practice = make_practice()
    consenting = practice.create_client()
    without = practice.create_client(ai_consent=False, first_name="Otto")
    session = new_session(practice, practice.admin, consenting["id"])
    chat = practice.client.post(f"/api/v1/clients/{consenting['id']}/conversations",
                                headers=practice.admin.headers).json
    admin_conn.execute(f'UPDATE "t_{practice.id.hex}".clients SET restricted_at = now(), '
                       "restricted_by = 'test' WHERE id = ANY(%s)",
                       ([uuid.UUID(consenting["id"]), uuid.UUID(without["id"])],))
    c, h = practice.client, practice.admin.headers

    assert_error(c.post(consents_path(without["id"]), json={"purpose": AI}, headers=h),
                 409, "client_restricted")
    assert_error(c.post(consents_path(consenting["id"]), json={"purpose": AI}, headers=h),
                 409, "client_restricted")
    for stream in (False, True):
        assert_error(draft(practice, practice.admin, session["id"], stream), 409,
                     "client_restricted")
        assert_error(c.post(f"/api/v1/conversations/{chat['id']}/messages",
                            json={"content": "Hm?"}, headers={**h, **(STREAM if stream
                                                                       else {})}),
                     409, "client_restricted")
    assert_error(c.post(f"/api/v1/clients/{consenting['id']}/conversations", headers=h),
                 409, "client_restricted")
    # Even with the setting off the restriction holds.
    set_consent_required(practice, False)
    assert_error(draft(practice, practice.admin, session["id"]), 409, "client_restricted")

    assert c.get(consents_path(consenting["id"]), headers=h).status_code == 200
    assert_error(c.delete(f"{consents_path(consenting['id'])}/{AI}", headers=h), 409,
                 "client_restricted")
    assert [x["id"] for x in c.get(f"/api/v1/clients/{consenting['id']}/conversations",
                                   headers=h).json] == [chat["id"]]


# --- Settings -----------------------------------------------------------------------

def test_settings_defaults_and_changes(make_practice: Any) -> None:
    practice = make_practice()
    c, h = practice.client, practice.admin.headers
    assert c.get("/api/v1/admin/settings", headers=h).json == {
        "ai_consent_required": True, "record_retention_years": 10,
        "minimum_record_retention_years": 10}

    changed = c.patch("/api/v1/admin/settings", headers=h, json={"record_retention_years": 12})
    assert changed.status_code == 200, changed.json
    assert changed.json == {"ai_consent_required": True, "record_retention_years": 12,
                            "minimum_record_retention_years": 10}
    assert c.get("/api/v1/admin/settings", headers=h).json == changed.json

    # Only the fields sent change.
    off = c.patch("/api/v1/admin/settings", headers=h, json={"ai_consent_required": False})
    assert off.json == {"ai_consent_required": False, "record_retention_years": 12,
                        "minimum_record_retention_years": 10}
    both = c.patch("/api/v1/admin/settings", headers=h,
                   json={"ai_consent_required": True, "record_retention_years": 100})
    assert both.json["record_retention_years"] == 100 and both.json["ai_consent_required"]

    events = audit_events(practice, "settings.update")
    assert len(events) == 3
    assert {(e["resource_type"], tuple(e["resource_ids"])) for e in events} == {
        ("practice_settings", (str(practice.id),))}


def test_settings_belong_to_one_practice(make_practice: Any) -> None:
    practice, other = make_practice(), make_practice("Andere Praxis")
    assert practice.client.patch("/api/v1/admin/settings", headers=practice.admin.headers,
                                 json={"ai_consent_required": False,
                                       "record_retention_years": 30}).status_code == 200
    assert other.client.get("/api/v1/admin/settings", headers=other.admin.headers).json == {
        "ai_consent_required": True, "record_retention_years": 10,
        "minimum_record_retention_years": 10}


# --- A withdrawal while the model writes -------------------------------------------

@pytest.mark.parametrize("feature", ["note_draft", "case_chat"])
def test_a_reply_finished_after_the_withdrawal_is_not_saved(
    make_practice: Any, admin_conn: Any, feature: str,
) -> None:
    """The gate passed and the model is writing (a stream not yet read) when the consent
    is withdrawn: the finished reply is not saved (the save checks the consent again)."""
    practice = make_practice()
    therapist = practice.add_member()
    c, h = practice.client, therapist.headers
    client = practice.create_client(by=therapist)
    session = new_session(practice, therapist, client["id"])
    chat = c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h, json={}).json
    if feature == "note_draft":
        path, body = f"/api/v1/sessions/{session['id']}/note-drafts", {"format": "SOAP"}
    else:
        path, body = f"/api/v1/conversations/{chat['id']}/messages", {"content": "Hm?"}

    response = c.post(path, json=body, headers={**h, **STREAM}, buffered=False)
    assert response.status_code == 201
    assert c.delete(f"{consents_path(client['id'])}/{AI}", headers=h).status_code == 204
    text = response.get_data(as_text=True)
    response.close()
    assert "event: delta" in text
    assert "event: error" in text and '"save_failed"' in text, text
    assert "event: done" not in text
    assert count(admin_conn, practice, "SELECT count(*) FROM {schema}.notes") == 0
    assert count(admin_conn, practice,
                 "SELECT count(*) FROM {schema}.conversation_messages") == 0
    assert count(admin_conn, practice, "SELECT count(*) FROM {schema}.conversations") == 0

"""AI features through the API: drafts, case chat, usage; the simulator stands in for Azure."""

from __future__ import annotations

import json

import pytest

TRANSCRIPT = ("Quentin Quenstedt says he slept better this week. Mr. Quenstedt walked daily. "
              "Quenstedt's mood seems brighter. He wants to keep the weekly rhythm.")


@pytest.fixture
def case(make_practice):
    practice = make_practice()
    client = practice.create_client(first_name="Quentin", last_name="Quenstedt",
                                    date_of_birth="1985-04-12",
                                    contact={"email": "q@example.org", "phone": "+49 30 1234567"})
    session = practice.client.post(
        f"/api/v1/clients/{client['id']}/sessions", headers=practice.admin.headers,
        json={"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
              "modality": "video", "transcript": TRANSCRIPT}).json
    return practice, client, session


def parse_sse(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_draft_note(app, case):
    practice, _client, session = case
    simulator = app.extensions["clinai_llm_simulator"]
    before = len(simulator.requests)
    response = practice.client.post(f"/api/v1/sessions/{session['id']}/note-drafts",
                                    json={"format": "SOAP"}, headers=practice.admin.headers)
    assert response.status_code == 201, response.json
    note = response.json
    assert (note["status"], note["source"], note["format"]) == ("draft", "ai", "SOAP")
    assert set(note["content"]) <= {"subjective", "objective", "assessment", "plan"}
    assert "Quenstedt" in json.dumps(note["content"])  # restored for the user
    sent = json.dumps(simulator.requests[before:])
    assert "Quenstedt" not in sent and "Quentin" not in sent


def test_draft_note_streamed(app, case):
    practice, _client, session = case
    response = practice.client.post(
        f"/api/v1/sessions/{session['id']}/note-drafts", json={"format": "DAP"},
        headers={**practice.admin.headers, "Accept": "text/event-stream"})
    assert response.status_code == 201
    events = parse_sse(response.get_data(as_text=True))
    assert events[-1][0] == "done"
    done = events[-1][1]
    text = "".join(e[1]["text"] for e in events if e[0] == "delta")
    assert "Quenstedt" in text
    usage = done["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    note = practice.client.get(f"/api/v1/notes/{done['note_id']}",
                               headers=practice.admin.headers).json
    assert note["source"] == "ai"


def test_case_chat_and_usage(app, case):
    practice, client, _session = case
    c, h = practice.client, practice.admin.headers
    conversation = c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h)
    assert conversation.status_code == 201
    path = f"/api/v1/conversations/{conversation.json['id']}/messages"
    reply = c.post(path, json={"content": "How is Quenstedt doing?"}, headers=h)
    assert reply.status_code == 201, reply.json
    assert reply.json["role"] == "assistant"
    history = c.get(path, headers=h).json
    assert [m["role"] for m in history] == ["user", "assistant"]
    usage = c.get("/api/v1/admin/usage", headers=h)
    assert usage.status_code == 200, usage.json
    body = usage.json
    assert body["by_feature"]["case_chat"]["calls"] == 1
    assert body["total_tokens"] == body["budget"]["used"]
    assert body["budget"]["reserved"] == 0


def test_other_clients_of_the_practice_are_masked_too(app, case):
    practice, _client, session = case
    practice.create_client(first_name="Wilhelmine", last_name="Zwickelbauer")
    c, h = practice.client, practice.admin.headers
    etag = c.get(f"/api/v1/sessions/{session['id']}", headers=h).headers["ETag"]
    c.patch(f"/api/v1/sessions/{session['id']}", headers={**h, "If-Match": etag},
            json={"transcript": f"{TRANSCRIPT} He met Wilhelmine Zwickelbauer outside."})
    simulator = app.extensions["clinai_llm_simulator"]
    before = len(simulator.requests)
    response = c.post(f"/api/v1/sessions/{session['id']}/note-drafts", json={"format": "SOAP"},
                      headers=h)
    assert response.status_code == 201
    sent = json.dumps(simulator.requests[before:])
    assert "Zwickelbauer" not in sent and "Wilhelmine" not in sent
    assert "[OTHER_1]" in sent and "[OTHER_2]" in sent


def test_token_counter_has_tenant_dimension(app, case, metric_reader):
    reader = metric_reader
    practice, _client, session = case
    response = practice.client.post(f"/api/v1/sessions/{session['id']}/note-drafts",
                                    json={"format": "BIRP"}, headers=practice.admin.headers)
    assert response.status_code == 201
    data = reader.get_metrics_data()
    points = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
              if m.name == "clinai.llm.tokens" for p in m.data.data_points]
    mine = {p.attributes["kind"]: p.value for p in points
            if p.attributes.get("tenant_id") == str(practice.id)}
    assert mine["prompt"] > 0 and mine["completion"] > 0


def test_conversation_create_refuses_unknown_fields(case):
    practice, client, _session = case
    response = practice.client.post(f"/api/v1/clients/{client['id']}/conversations",
                                    json={"x": 1}, headers=practice.admin.headers)
    assert (response.status_code, response.json["error"]) == (422, "validation_failed")


def test_streamed_reply_that_cannot_be_saved_ends_with_error(app, case, admin_conn):
    practice, client, _session = case
    c, h = practice.client, practice.admin.headers
    conversation = c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h).json
    path = f"/api/v1/conversations/{conversation['id']}/messages"
    response = c.post(path, json={"content": "Quenstedt cried."},
                      headers={**h, "Accept": "text/event-stream"}, buffered=False)
    # The stream has not run yet: take the conversation away under it, so that saving
    # the finished reply fails (its messages would reference a missing conversation).
    admin_conn.execute(f'DELETE FROM "t_{practice.id.hex}".conversations WHERE id = %s',
                       (conversation["id"],))
    events = parse_sse(response.get_data(as_text=True))
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] == "save_failed"
    kept = admin_conn.execute(
        f'SELECT count(*) FROM "t_{practice.id.hex}".conversation_messages '
        "WHERE conversation_id = %s", (conversation["id"],)).fetchone()
    assert kept == (0,)


def test_request_larger_than_the_minute_limit_is_413(database_url, issuer, app, case):
    from api import create_app
    from tests.conftest import app_config

    practice, _client, session = case
    small = create_app(app_config(database_url, issuer, LLM_TENANT_TOKENS_PER_MINUTE=100))
    try:
        response = small.test_client().post(f"/api/v1/sessions/{session['id']}/note-drafts",
                                            json={"format": "SOAP"},
                                            headers=practice.admin.headers)
        assert (response.status_code, response.json["error"]) == (413, "request_too_large")
    finally:
        small.extensions["clinai_db"].dispose()


def test_a_chat_message_that_cannot_be_stored_is_refused_before_the_model(case):
    practice, client, _session = case
    c, h = practice.client, practice.admin.headers
    conversation = c.post(f"/api/v1/clients/{client['id']}/conversations", headers=h).json
    response = c.post(f"/api/v1/conversations/{conversation['id']}/messages", headers=h,
                      json={"content": "Quenstedt cried.\u0000"})
    assert (response.status_code, response.json["error"]) == (422, "validation_failed")
    assert "json.content" in response.json["message"]
    assert c.get("/api/v1/admin/usage", headers=h).json["calls"] == 0  # nothing metered

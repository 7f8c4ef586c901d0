"""Issue 10, findings 1, 2 and 6b: what a therapist may learn through the AI path.

One practice, two therapists. Tom may open his own client (Eberhard Klein) and nobody
else's; other therapists' clients are masked before text reaches the model, and a
masked identifier comes back exactly as Tom typed it, never as stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

GUESS = ("Candidates: schmidt, mueller, zimmermann, meyer, wendelin, ottokar, born "
         "23.11.1980, tel 030 5550202, OTTOKAR.Z@EXAMPLE.ORG. Also Lena and Hartmann.")
# What is stored for the other therapist's clients, and must never come back.
STORED = ["Zimmermann", "Wendelin", "Ottokar", "1980-11-23", "+49 30 5550202",
          "ottokar.z@example.org", "Anna-Lena", "Schulze-Hartmann"]
# What Tom typed that identifies them, and must never reach the model.
TYPED = ["zimmermann", "wendelin", "ottokar", "23.11.1980", "030 5550202",
         "OTTOKAR.Z@EXAMPLE.ORG", "Lena", "Hartmann"]


@pytest.fixture
def setting(make_practice: Any) -> dict[str, Any]:
    practice = make_practice()
    tom, other = practice.add_member("therapist"), practice.add_member("therapist")
    own = practice.create_client(by=tom, first_name="Eberhard", last_name="Klein")
    hidden = practice.create_client(
        by=other, first_name="Wendelin Ottokar", last_name="Zimmermann",
        date_of_birth="1980-11-23",
        contact={"phone": "+49 30 5550202", "email": "ottokar.z@example.org"})
    fragment = practice.create_client(by=other, first_name="Anna-Lena",
                                      last_name="Schulze-Hartmann")
    return {"practice": practice, "tom": tom, "own": own, "hidden": hidden,
            "fragment": fragment}


def _chat(practice: Any, who: Any, client_id: str, content: str,
          stream: bool = False) -> tuple[Any, str]:
    c = practice.client
    conversation = c.post(f"/api/v1/clients/{client_id}/conversations", headers=who.headers)
    assert conversation.status_code == 201, conversation.json
    path = f"/api/v1/conversations/{conversation.json['id']}/messages"
    headers = {**who.headers, **({"Accept": "text/event-stream"} if stream else {})}
    return c.post(path, json={"content": content}, headers=headers), path


@pytest.mark.parametrize("stream", [False, True])
def test_a_guess_comes_back_as_typed_never_completed(app: Any, setting: dict[str, Any],
                                                     stream: bool) -> None:
    practice, tom = setting["practice"], setting["tom"]
    hidden = setting["hidden"]["id"]
    assert practice.client.get(f"/api/v1/clients/{hidden}",
                               headers=tom.headers).status_code == 404
    simulator = app.extensions["clinai_llm_simulator"]
    before = len(simulator.requests)
    reply, path = _chat(practice, tom, setting["own"]["id"], GUESS, stream)
    assert reply.status_code == 201
    raw = reply.get_data(as_text=True)
    body = ("".join(json.loads(line[6:]).get("text", "") for line in raw.splitlines()
                    if line.startswith("data: ")) if stream else reply.json["content"])
    stored = json.dumps(practice.client.get(path, headers=tom.headers).json)
    for value in STORED:  # case-sensitive: Tom typed lowercase and upper case forms
        assert value not in body and value not in raw, value
        assert value not in stored, value
    assert "zimmermann, meyer, wendelin, ottokar" in body  # restored as typed
    sent = json.dumps(simulator.requests[before:])
    for value in TYPED + STORED:
        assert value.casefold() not in sent.casefold(), value


def test_other_clients_are_masked_in_a_practice_of_any_size(
    app: Any, setting: dict[str, Any], admin_conn: Any,
) -> None:
    """The clients to mask are found by an indexed lookup of the text's keys: one created
    before 600 others is masked (a list of the 500 newest missed it)."""
    practice, tom = setting["practice"], setting["tom"]
    old = practice.create_client(first_name="Sigrun", last_name="Lindqvist",
                                 date_of_birth="1990-02-14")
    admin_conn.execute(
        f'INSERT INTO "t_{practice.id.hex}".clients '
        "(id, tenant_id, first_name, last_name, created_at) "
        "SELECT gen_random_uuid(), %s, 'Filler' || i, 'Person' || i, "
        "now() + i * interval '1 second' FROM generate_series(1, 600) AS i",
        (practice.id,))
    admin_conn.execute(  # the keys the model layer writes with every client
        f'INSERT INTO "t_{practice.id.hex}".client_identity_keys (key, client_id, tenant_id) '
        f"SELECT k, id, tenant_id FROM \"t_{practice.id.hex}\".clients, "
        "unnest(ARRAY['n:' || lower(first_name), 'n:' || lower(last_name)]) AS k "
        "WHERE first_name LIKE 'Filler%%'")
    simulator = app.extensions["clinai_llm_simulator"]
    before = len(simulator.requests)
    reply, _path = _chat(practice, tom, setting["own"]["id"],
                         "Does Lindqvist, Sigrun or Anna-Lena Schulze-Hartmann "
                         "(born 14.02.1990) know Eberhard? Filler7 does.")
    assert reply.status_code == 201, reply.json
    sent = json.dumps(simulator.requests[before:])
    for value in ("Lindqvist", "Sigrun", "Anna-Lena", "Schulze-Hartmann", "14.02.1990",
                  "Eberhard", "Filler7"):
        assert value not in sent, value
    events = practice.client.get("/api/v1/admin/audit-events?action=client.mask",
                                 headers=practice.admin.headers).json
    masked = {rid for event in events for rid in event["resource_ids"]}
    assert {old["id"], setting["fragment"]["id"]} <= masked
    assert setting["own"]["id"] not in masked  # the case's client is not "another client"
    assert all(event["actor_id"] == tom.sub for event in events)


def test_the_audit_names_masked_clients_of_a_note_draft(app: Any,
                                                        setting: dict[str, Any]) -> None:
    practice, tom = setting["practice"], setting["tom"]
    c = practice.client
    session = c.post(f"/api/v1/clients/{setting['own']['id']}/sessions", headers=tom.headers,
                     json={"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
                           "modality": "video",
                           "transcript": "Eberhard mentioned Zimmermann twice. He slept."})
    assert session.status_code == 201, session.json
    draft = c.post(f"/api/v1/sessions/{session.json['id']}/note-drafts",
                   json={"format": "SOAP"}, headers=tom.headers)
    assert draft.status_code == 201, draft.json
    assert "Zimmermann" in json.dumps(draft.json["content"])  # typed so in the transcript
    events = c.get("/api/v1/admin/audit-events?action=client.mask",
                   headers=practice.admin.headers).json
    assert [event["resource_ids"] for event in events] == [[setting["hidden"]["id"]]]


def test_nul_in_a_chat_message_is_refused_before_any_token(app: Any,
                                                           setting: dict[str, Any]) -> None:
    """Finding 3: validated before the model is called; nothing metered, nothing sent."""
    practice, tom = setting["practice"], setting["tom"]
    simulator = app.extensions["clinai_llm_simulator"]
    before = len(simulator.requests)
    reply, _path = _chat(practice, tom, setting["own"]["id"], "Klein cried.\u0000")
    assert (reply.status_code, reply.json["error"]) == (422, "validation_failed")
    assert len(simulator.requests) == before
    usage = practice.client.get("/api/v1/admin/usage", headers=practice.admin.headers).json
    assert usage["total_tokens"] == 0 and usage["budget"]["reserved"] == 0

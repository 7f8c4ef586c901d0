"""Malformed input a newcomer sends: a clear 4xx in the shared shape, saying what is wrong."""

from __future__ import annotations

import json

import pytest

GENERIC_422 = "The request was well-formed but was unable to be followed"


def _shape(response, status: int, error: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) >= {"code", "status", "message", "error"}
    assert body["code"] == status and body["error"] == error
    return body


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded",  # what `curl -d` sends without -H
    "text/plain",
    "multipart/form-data; boundary=x",
])
def test_a_body_that_is_not_json_is_415(make_practice, content_type):
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", data=json.dumps({"first_name": "A", "last_name": "B"}),
        headers={**practice.admin.headers, "Content-Type": content_type})
    body = _shape(response, 415, "unsupported_media_type")
    assert "application/json" in body["message"]
    listed = practice.client.get("/api/v1/clients", headers=practice.admin.headers)
    assert listed.json == []  # nothing was written


def test_json_with_a_charset_is_json(make_practice):
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", data=json.dumps({"first_name": "A", "last_name": "B"}),
        headers={**practice.admin.headers, "Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201, response.json


def test_no_body_at_all_names_the_missing_fields(make_practice):
    practice = make_practice()
    response = practice.client.post("/api/v1/clients", headers=practice.admin.headers)
    body = _shape(response, 422, "validation_failed")
    assert "first_name" in body["message"] and "last_name" in body["message"]


@pytest.mark.parametrize(("method", "path", "payload", "says"), [
    ("post", "/api/v1/clients", {"first_name": "A"}, "json.last_name: Missing data"),
    ("post", "/api/v1/clients", {"first_name": "A", "last_name": "B", "status": "gone"},
     "json.status: Must be one of"),
    ("post", "/api/v1/clients", {"first_name": "A", "last_name": "B",
                                 "contact": {"email": "not-an-address"}},
     "json.contact.email: Not a valid email address."),
    ("post", "/api/v1/clients", {"first_name": "A", "last_name": "B", "shoe_size": 44},
     "json.shoe_size: Unknown field."),
    ("get", "/api/v1/clients?status=gone", None, "query.status: Must be one of"),
    ("get", "/api/v1/clients?page_size=1000", None, "query.page_size: Must be greater"),
    ("get", "/api/v1/admin/usage?period=2026-13", None, "query.period: Use YYYY-MM."),
])
def test_every_422_says_what_was_wrong(make_practice, method, path, payload, says):
    practice = make_practice()
    response = getattr(practice.client, method)(path, json=payload,
                                                headers=practice.admin.headers)
    body = _shape(response, 422, "validation_failed")
    assert GENERIC_422 not in body["message"]
    assert body["message"].startswith("Invalid input: ")
    assert says in body["message"], body["message"]
    assert body["errors"]


def test_a_huge_unknown_field_name_does_not_make_a_huge_message(make_practice):
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", json={"first_name": "A", "last_name": "B", "x" * 50_000: 1},
        headers=practice.admin.headers)
    body = _shape(response, 422, "validation_failed")
    assert len(body["message"]) <= 500


def test_invalid_json_is_400_in_the_shared_shape(make_practice):
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", data='{"first_name": "A",',
        headers={**practice.admin.headers, "Content-Type": "application/json"})
    body = _shape(response, 400, "bad_request")
    assert "JSON" in body["message"]


@pytest.mark.parametrize(("payload", "field"), [
    ('{"first_name": "A\\u0000", "last_name": "B"}', "json.first_name"),
    ('{"first_name": "A", "last_name": "\\ud800"}', "json.last_name"),
    ('{"first_name": "A", "last_name": "B", "contact": {"phone": "1\\u0000"}}',
     "json.contact.phone"),
])
def test_unstorable_strings_are_422_naming_the_field(make_practice, payload, field):
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", data=payload,
        headers={**practice.admin.headers, "Content-Type": "application/json"})
    body = _shape(response, 422, "validation_failed")
    assert field in body["message"], body["message"]
    assert practice.client.get("/api/v1/clients", headers=practice.admin.headers).json == []


@pytest.mark.parametrize("path", [
    "/api/v1/admin/audit-events?action=%00",
    "/api/v1/clients?page=99999999999999999999",
    "/api/v1/clients?page=" + "9" * 200,
])
def test_unusable_query_values_are_422_naming_the_parameter(make_practice, path):
    practice = make_practice()
    body = _shape(practice.client.get(path, headers=practice.admin.headers), 422,
                  "validation_failed")
    assert body["message"].startswith("Invalid input: query.")


@pytest.mark.parametrize("payload", [
    "[" * 5000 + "]" * 5000,
    '{"first_name": "A", "last_name": ' + "1" * 5000 + "}",
])
def test_json_the_parser_cannot_hold_is_400(make_practice, payload):
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", data=payload,
        headers={**practice.admin.headers, "Content-Type": "application/json"})
    _shape(response, 400, "bad_request")


def test_a_birth_date_in_the_future_is_refused(make_practice):
    practice = make_practice()
    response = practice.client.post(
        "/api/v1/clients", json={"first_name": "A", "last_name": "B",
                                 "date_of_birth": "3000-01-01"},
        headers=practice.admin.headers)
    assert "json.date_of_birth" in _shape(response, 422, "validation_failed")["message"]


def test_a_body_over_the_limit_names_the_limit(app, make_practice):
    practice = make_practice()
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = practice.client.post(
        "/api/v1/clients", data=b"{" + b" " * limit + b"}",
        headers={**practice.admin.headers, "Content-Type": "application/json"})
    assert str(limit) in _shape(response, 413, "payload_too_large")["message"]


def test_lone_surrogates_are_refused_on_every_text_route(make_practice, issuer, app):
    """Issue 10, 4: a lone surrogate in a practice name, a transcript or a chat message is
    a 422 naming the field, decided before any work (no model call, no write)."""
    import uuid

    practice = make_practice()
    c, h = practice.client, {**practice.admin.headers, "Content-Type": "application/json"}
    client = practice.create_client()
    session = c.post(f"/api/v1/clients/{client['id']}/sessions", headers=practice.admin.headers,
                     json={"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
                           "modality": "video"}).json
    conversation = c.post(f"/api/v1/clients/{client['id']}/conversations",
                          headers=practice.admin.headers).json
    newcomer = {"Authorization": f"Bearer {issuer.token(f'u-{uuid.uuid4()}')}",
                "Content-Type": "application/json"}
    simulator = app.extensions["clinai_llm_simulator"]
    before = len(simulator.requests)
    cases = [
        ("/api/v1/onboarding/tenants", newcomer, '{"name": "Praxis \\ud800"}', "json.name"),
        (f"/api/v1/clients/{client['id']}/sessions", h,
         '{"started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50, '
         '"modality": "video", "transcript": "A\\udfff"}', "json.transcript"),
        (f"/api/v1/conversations/{conversation['id']}/messages", h,
         '{"content": "Wie geht es \\ud83d?"}', "json.content"),
    ]
    for path, headers, body, field in cases:
        response = c.post(path, data=body, headers=headers)
        assert field in _shape(response, 422, "validation_failed")["message"], path
    assert len(simulator.requests) == before
    assert c.get(f"/api/v1/conversations/{conversation['id']}/messages",
                 headers=practice.admin.headers).json == []
    assert session["transcript"] is None

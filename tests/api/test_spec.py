"""The OpenAPI document as an integrator reads it: valid, complete, and true.

The other direction (every error a request really got is documented on its operation)
is checked for every request of the whole suite by ``errors_are_documented`` in
``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from api.error_codes import ERROR_CODES, markdown_table

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "patch", "delete"}
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def spec(app) -> dict[str, Any]:
    with app.test_client() as client:
        document: dict[str, Any] = client.get("/openapi.json").json
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items()
            for method, op in item.items() if method in METHODS]


def header_names(spec: dict[str, Any], response: dict[str, Any]) -> set[str]:
    return set(response.get("headers", {}))


def test_spec_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises with the first violation


def test_every_operation_has_summary_description_and_examples(spec):
    missing = []
    for method, path, op in operations(spec):
        where = f"{method} {path}"
        if not op.get("summary"):
            missing.append(f"{where}: summary")
        if len(op.get("description", "")) < 40:
            missing.append(f"{where}: description")
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None and "example" not in body:
            missing.append(f"{where}: request example")
        success = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        if not success:
            missing.append(f"{where}: success response")
        for status, response in success.items():
            contents = response.get("content", {})
            content = contents.get("application/json", contents.get("application/octet-stream"))
            if status != "204" and (content is None or "example" not in content):
                missing.append(f"{where}: {status} example")
    assert missing == []


def test_every_operation_lists_its_errors_with_the_shared_schema(spec):
    problems = []
    for method, path, op in operations(spec):
        where = f"{method} {path}"
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        # Only a download link (the link is the credential) declares no security at all.
        if "401" not in errors and not (op.get("security") == [] and "downloads" in path):
            problems.append(f"{where}: no 401 (every operation needs credentials)")
        if "requestBody" in op and not {"400", "413", "415", "422"} <= set(errors):
            problems.append(f"{where}: body errors 400/413/415/422 missing")
        for status, response in errors.items():
            content = response["content"]["application/json"]
            if content["schema"] != {"$ref": ERROR_REF}:
                problems.append(f"{where} {status}: not the shared error schema")
            if "X-Request-ID" not in header_names(spec, response):
                problems.append(f"{where} {status}: no X-Request-ID header")
            if not content.get("examples"):
                problems.append(f"{where} {status}: no examples")
            for code, example in content.get("examples", {}).items():
                known = ERROR_CODES.get(code)
                if known is None or known.status != int(status):
                    problems.append(f"{where} {status}: {code} is not registered with it")
                elif example["value"]["error"] != code or example["value"]["code"] != int(status):
                    problems.append(f"{where} {status}: example of {code} is wrong")
                if code not in response["description"]:
                    problems.append(f"{where} {status}: description omits {code}")
                if known and known.retry_after and "Retry-After" not in header_names(
                        spec, response):
                    problems.append(f"{where} {status}: Retry-After not declared")
    assert problems == []


def test_headers_are_declared(spec):
    components = spec["components"]["headers"]
    assert {"X-Request-ID", "ETag", "Retry-After", "PAGINATION"} <= set(components)
    ops = {(m, p): op for m, p, op in operations(spec)}
    for (method, path), op in ops.items():
        for status, response in op["responses"].items():
            if status.startswith("2"):
                assert "X-Request-ID" in response["headers"], (method, path)
        if any(p.get("name") == "page_size" for p in op.get("parameters", [])):
            assert "X-Pagination" in op["responses"]["200"]["headers"], (method, path)
    etag_ops = [("GET", "/api/v1/clients/{client_id}"), ("PATCH", "/api/v1/clients/{client_id}"),
                ("POST", "/api/v1/clients"), ("GET", "/api/v1/sessions/{session_id}"),
                ("PATCH", "/api/v1/notes/{note_id}"), ("POST", "/api/v1/notes/{note_id}/sign"),
                ("POST", "/api/v1/sessions/{session_id}/note-drafts")]
    for key in etag_ops:
        success = next(r for s, r in ops[key]["responses"].items() if s.startswith("2"))
        assert "ETag" in success["headers"], key
    for key in [("PATCH", "/api/v1/clients/{client_id}"),
                ("PATCH", "/api/v1/sessions/{session_id}"), ("PATCH", "/api/v1/notes/{note_id}")]:
        if_match = [p for p in ops[key]["parameters"] if p.get("name") == "If-Match"]
        assert if_match and if_match[0]["required"] is True, key
        assert {"412", "428"} <= set(ops[key]["responses"]), key


@pytest.mark.parametrize(("path", "done_key"), [
    ("/api/v1/sessions/{session_id}/note-drafts", "note_id"),
    ("/api/v1/conversations/{conversation_id}/messages", "message_id"),
])
def test_streaming_routes_document_their_event_stream(spec, path, done_key):
    op = spec["paths"][path]["post"]
    stream = op["responses"]["201"]["content"]["text/event-stream"]
    for event in ("event: delta", "event: done"):
        assert event in stream["example"]
    for name in ("`delta`", "`done`", "`error`", done_key):
        assert name in stream["schema"]["description"]
    assert {"429", "503", "413"} <= set(op["responses"])
    assert "Retry-After" in op["responses"]["429"]["headers"]


def test_b2c_connector_documents_its_200(spec):
    op = spec["paths"]["/api/v1/b2c/claims"]["post"]
    ok = op["responses"]["200"]["content"]["application/json"]
    assert ok["example"]["action"] == "Continue"
    assert op["security"] == [{"b2cBasic": []}]


def test_cost_is_a_string_in_the_spec_and_on_the_wire(spec, make_practice):
    usage = spec["components"]["schemas"]["UsageTotals"]["properties"]["cost"]
    assert usage["type"] == "string"
    practice = make_practice()
    served = practice.client.get("/api/v1/admin/usage", headers=practice.admin.headers).json
    assert isinstance(served["cost"], str)
    assert served["cost"] == "0" or float(served["cost"]) >= 0


def test_error_table_is_generated_from_the_registry():
    assert (ROOT / "docs" / "ERRORS.md").read_text() == markdown_table(), (
        "docs/ERRORS.md is stale: python -m api.error_codes > docs/ERRORS.md")


def test_every_registered_code_is_used_somewhere(spec):
    """A registered code that no operation documents and no probe answers is dead."""
    documented = {code for _m, _p, op in operations(spec) for response in op["responses"].values()
                  for code in response.get("content", {}).get("application/json", {})
                  .get("examples", {})}
    not_on_operations = {"method_not_allowed", "internal_error", "database_unavailable",
                         # answered by gunicorn before the app (tests/test_gunicorn_errors.py)
                         "malformed_request", "uri_too_long", "headers_too_large"}
    assert set(ERROR_CODES) - documented == not_on_operations


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    from openapi_schema_validator import OAS31Validator

    # The whole document as the root, so that "#/components/..." references resolve.
    return OAS31Validator({**schema, "components": spec["components"]},
                          format_checker=OAS31Validator.FORMAT_CHECKER)


def test_every_example_matches_its_schema(spec):
    """An example that its own schema refuses would mislead a code generator."""
    wrong = []
    for method, path, op in operations(spec):
        bodies = [("request", op.get("requestBody", {}).get("content", {}))]
        bodies += [(status, r.get("content", {})) for status, r in op["responses"].items()
                   if "$ref" not in r]
        for where, content in bodies:
            media = content.get("application/json")
            if media is None:
                continue
            examples = [media["example"]] if "example" in media else [
                e["value"] for e in media.get("examples", {}).values()]
            for example in examples:
                for error in _validator(spec, media["schema"]).iter_errors(example):
                    wrong.append(f"{method} {path} {where}: {error.message}")
    assert wrong == []


def test_served_records_match_their_schemas(spec, make_practice):
    """What the server really sends, nulls included, is what the document declares."""
    practice = make_practice()
    therapist = practice.add_member()
    client = practice.create_client(by=therapist)
    h = therapist.headers
    session = practice.client.post(f"/api/v1/clients/{client['id']}/sessions", headers=h, json={
        "started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
        "modality": "video", "transcript": "T: Hello. C: Hello."}).json
    note = practice.client.post(f"/api/v1/sessions/{session['id']}/notes", headers=h,
                                json={"format": "free", "content": {"text": "Met."}}).json
    conversation = practice.client.post(f"/api/v1/clients/{client['id']}/conversations",
                                        headers=h, json={}).json
    practice.client.post(f"/api/v1/conversations/{conversation['id']}/messages", headers=h,
                         json={"content": "What next?"})
    served = {
        "Client": practice.client.get(f"/api/v1/clients/{client['id']}", headers=h).json,
        "TherapySession": session,
        "Note": note,
        "Conversation": conversation,
    }
    messages = practice.client.get(f"/api/v1/conversations/{conversation['id']}/messages",
                                   headers=h).json
    assert [m["author_id"] is None for m in messages] == [False, True]
    wrong = []
    for name, body in served.items():
        ref = {"$ref": f"#/components/schemas/{name}"}
        wrong += [f"{name}: {e.message}" for e in _validator(spec, ref).iter_errors(body)]
    for message in messages:
        ref = {"$ref": "#/components/schemas/Message"}
        wrong += [f"Message: {e.message}" for e in _validator(spec, ref).iter_errors(message)]
    assert wrong == []

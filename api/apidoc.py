"""What the OpenAPI document says about errors, headers and streams, from one place.

Views and the auth decorators *declare* what an operation can answer
(``document_errors``, ``Blueprint.errors``, ``Blueprint.if_match``,
``Blueprint.event_stream``); ``prepare_operation_doc`` turns the declarations into the
operation's error responses, with the shared error schema, one example per ``error``
code (from ``api.error_codes``) and the headers every response carries. A test checks
the other direction: every error a request really got was declared on its operation.
Nothing here runs per request: this is data about functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any, TypeVar

from api.error_codes import ERROR_CODES
from api.errors import error_body

F = TypeVar("F", bound=Callable[..., Any])

# Response headers, registered as components (see ``register_components``).
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: the caller's `X-Request-ID` if it sent a usable one, "
                       "else generated. Quote it when reporting a problem; it is in the "
                       "server's logs and the audit trail.",
        "schema": {"type": "string"}, "example": "3f1c9a7e52d84b0c9e6f1d2a7b4c8e01"},
    "ETag": {
        "description": "The record's version. Send it back in `If-Match` to change the record.",
        "schema": {"type": "string"}, "example": '"5b0e1c7a2f7d4a41b0c36e3d9a8f1e42.1"'},
    "Retry-After": {
        "description": "Seconds after which the same request can succeed.",
        "schema": {"type": "integer", "minimum": 1}, "example": 30},
}

# What the shared decorators can answer, declared where they are applied.
AUTHENTICATED_ERRORS = ("missing_token", "invalid_token", "token_expired",
                        "identity_provider_unavailable")
TENANT_MEMBER_ERRORS = (*AUTHENTICATED_ERRORS, "no_tenant", "tenant_unknown",
                        "tenant_inactive", "not_a_member", "role_forbidden",
                        "unsafe_database_role")
CONNECTOR_ERRORS = ("unauthorized", "connector_not_configured")
# Any operation that reads a JSON body; query arguments fail with validation_failed only.
BODY_ERRORS = ("bad_request", "payload_too_large", "unsupported_media_type",
               "validation_failed", "invalid_value")
IF_MATCH_ERRORS = ("precondition_required", "precondition_failed")
AI_ERRORS = ("token_budget_exhausted", "rate_limited", "request_too_large", "content_filtered",
             "llm_unavailable")

IF_MATCH_PARAMETER = {
    "in": "header", "name": "If-Match", "required": True,
    "description": "The `ETag` of the record as last read. Missing: 428 "
                   "`precondition_required`; stale, or `*`: 412 `precondition_failed`.",
    "schema": {"type": "string"}, "example": '"5b0e1c7a2f7d4a41b0c36e3d9a8f1e42.1"',
}


def _apidoc(func: Any) -> dict[str, Any]:
    # A copy: functools.wraps shares the inner function's dict with its wrapper.
    doc: dict[str, Any] = deepcopy(getattr(func, "_apidoc", {}))
    func._apidoc = doc
    return doc


def document_errors(func: F, *codes: str) -> F:
    """Declare the ``error`` codes ``func`` can answer with; return ``func``."""
    unknown = [c for c in codes if c not in ERROR_CODES]
    if unknown:
        raise KeyError(f"unregistered error codes {unknown}: add them to api/error_codes.py")
    declared: list[str] = _apidoc(func).setdefault("errors", [])
    declared.extend(c for c in codes if c not in declared)
    return func


def document(func: F, **info: Any) -> F:
    """Attach ``info`` for ``prepare_operation_doc``; return ``func``."""
    _apidoc(func).update(info)
    return func


def error_responses(codes: Iterable[str]) -> dict[int, dict[str, Any]]:
    """One response per status: the shared error schema and an example per code."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_CODES[code].status, []).append(code)
    responses: dict[int, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        group.sort()
        headers: dict[str, Any] = {"X-Request-ID": "X-Request-ID"}
        if any(ERROR_CODES[c].retry_after for c in group):
            headers["Retry-After"] = "Retry-After"
        responses[status] = {
            "description": "\n".join(f"- `{c}`: {ERROR_CODES[c].meaning}" for c in group),
            "headers": headers,
            "content": {"application/json": {
                "schema": "Error",
                "examples": {c: {"summary": ERROR_CODES[c].meaning,
                                 "value": example_error(c)} for c in group},
            }},
        }
    return responses


def example_error(code: str) -> dict[str, Any]:
    info = ERROR_CODES[code]
    body = error_body(info.status, code, info.meaning)
    if code == "validation_failed":
        body["message"] = "Invalid input: json.last_name: Missing data for required field."
        body["errors"] = {"json": {"last_name": ["Missing data for required field."]}}
    return body


def event_stream_content(done_key: str) -> dict[str, Any]:
    """The ``text/event-stream`` alternative of a streaming route's success response."""
    return {"text/event-stream": {
        "schema": {"type": "string", "description": (
            "Server-sent events, sent with `Accept: text/event-stream`. `delta` events carry "
            "`{\"text\": ...}` pieces of the reply as the model writes them; the stream ends "
            f"with one `done` event (`{{\"{done_key}\": ..., \"usage\": {{...}}}}`, after the "
            "whole reply was saved) or one `error` event (`{\"error\": code, \"message\": "
            "...}` with an AI error code, or `save_failed`; nothing is saved). Errors before "
            "the stream starts (budget, validation, access) are ordinary JSON error "
            "responses. A stream carries no `ETag`: read the record for it.")},
        "example": (
            'event: delta\ndata: {"text": "S: Client reports "}\n\n'
            'event: delta\ndata: {"text": "better sleep."}\n\n'
            f'event: done\ndata: {{"{done_key}": "9b3f2d4e-8a71-4c55-b0e2-6d1f8c3a7e90", '
            '"usage": {"prompt_tokens": 412, "completion_tokens": 96, '
            '"total_tokens": 508}}\n\n'),
    }}


def prepare_operation_doc(doc: dict[str, Any], doc_info: dict[str, Any], *, spec: Any,
                          **_kwargs: Any) -> dict[str, Any]:
    """flask-smorest doc callback: errors, headers and streams of one operation."""
    codes = list(doc_info.get("errors", []))
    if "requestBody" in doc:  # set by flask-smorest's arguments callback, which runs first
        codes.extend(BODY_ERRORS)
    elif doc_info.get("arguments") or doc_info.get("pagination"):
        codes.extend(("validation_failed", "invalid_value"))
    responses: dict[Any, Any] = doc.setdefault("responses", {})
    for status, response in error_responses(dict.fromkeys(codes)).items():
        responses.pop(str(status), None)
        responses[status] = response
    # Success first, then errors by status, the catch-all last.
    doc["responses"] = responses = dict(sorted(
        responses.items(), key=lambda kv: (kv[0] == "default", str(kv[0]))))
    success = [s for s in responses if str(s)[0] == "2"]
    for status in success:
        headers = responses[status].setdefault("headers", {})
        headers["X-Request-ID"] = "X-Request-ID"
        if doc_info.get("etag_header"):
            headers["ETag"] = "ETag"
    done_key = doc_info.get("event_stream")
    if done_key:
        for status in success:
            responses[status].setdefault("content", {}).update(event_stream_content(done_key))
    if doc_info.get("if_match"):
        doc.setdefault("parameters", []).append(IF_MATCH_PARAMETER)
    return doc


def register_components(spec: Any) -> None:
    """Add the shared response headers to the document's components."""
    for name, header in HEADERS.items():
        spec.components.header(name, header)

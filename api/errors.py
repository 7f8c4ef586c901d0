"""One JSON error shape for every failure.

flask-smorest's ``{"code", "status", "message", "errors"}`` plus ``"error"``, a
machine-readable code clients can branch on. Domain exceptions (tenancy) are mapped
to HTTP here, in one place.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import flask_smorest
from flask import Flask, Response, current_app, jsonify
from marshmallow import fields
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from api.domain import DomainError
from api.error_codes import ERROR_CODES
from api.tokens import IdentityProviderUnavailable
from llm.errors import LLMError
from storage.base import StorageError
from tenancy.errors import TenancyError

log = logging.getLogger(__name__)

DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    428: "precondition_required",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ErrorSchema(flask_smorest.error_handler.ErrorSchema):  # type: ignore[misc]  # untyped base
    error = fields.String(metadata={"description": "Machine-readable error code"})


def abort(status: int, error: str, message: str, **kwargs: Any) -> NoReturn:
    """Stop the request with ``status`` and the error shape."""
    flask_smorest.abort(status, error=error, message=message, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover  (abort always raises)


def error_body(status: int, error: str, message: str) -> dict[str, Any]:
    """The one error shape (``errors`` is added where there are field errors)."""
    return {"code": status, "status": HTTP_STATUS_CODES.get(status, "Error"),
            "message": message, "error": error}


def error_response(status: int, error: str, message: str,
                   errors: dict[str, Any] | None = None) -> Response:
    body = error_body(status, error, message)
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


class Api(flask_smorest.Api):  # type: ignore[misc]  # flask-smorest ships no hints
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        payload, code, headers = super().handle_http_exception(error)
        data = getattr(error, "data", None) or {}
        payload["error"] = data.get("error") or DEFAULT_CODES.get(code, "error")
        if "message" not in payload and payload.get("errors"):
            payload["message"] = describe_errors(payload["errors"])
        if "message" not in payload and not isinstance(error, InternalServerError):
            payload["message"] = error.description
        if code == 413 and not data.get("error"):
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            payload["message"] = f"The body is larger than the {limit} bytes the server accepts."
        if code >= 500 and not data.get("error"):
            # Our own 5xx (abort with an error code) say what to do; anything else says
            # nothing about the server's insides.
            payload["message"] = "The server could not complete the request."
        return payload, code, headers


def describe_errors(errors: Any, *, limit: int = 5) -> str:
    """Say in one line what was wrong: ``Invalid input: json.name: Missing data ...``."""
    found: list[str] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, [*path, str(key)])
        elif isinstance(node, list | tuple) and node and not all(isinstance(m, str)
                                                                 for m in node):
            for item in node:
                walk(item, path)
        else:
            messages = [node] if isinstance(node, str) else [str(m) for m in node]
            found.append(f"{'.'.join(path) or 'body'}: {' '.join(messages)}")

    walk(errors, [])
    more = f" (and {len(found) - limit} more)" if len(found) > limit else ""
    message = "Invalid input: " + "; ".join(found[:limit]) + more
    # Field names are the caller's input: a huge unknown key must not make a huge message.
    return message if len(message) <= 500 else message[:497] + "..."


CodedError = (DomainError | TenancyError | LLMError | IdentityProviderUnavailable
              | StorageError)


def coded_error_response(exc: CodedError) -> Response:
    """The error shape of an exception with a machine ``code``: the status comes from the
    code's entry in ``api.error_codes`` (one table for every layer)."""
    known = ERROR_CODES.get(exc.code)
    if known is None:
        log.error("unregistered error code %s (%s)", exc.code, type(exc).__name__)
        return error_response(500, "internal_error", "The server could not complete the request.")
    response = error_response(known.status, exc.code, exc.message,
                              getattr(exc, "errors", None))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask) -> None:
    """Map the domain, tenancy, LLM and identity-provider exceptions (and two database
    ones) to the error shape."""
    for family in (DomainError, TenancyError, LLMError, IdentityProviderUnavailable,
                   StorageError):
        app.register_error_handler(family, coded_error_response)

    @app.errorhandler(DataError)
    def _data(exc: DataError) -> Response:
        # The SQLSTATE only: the message can quote the offending value.
        log.warning("database refused a value (SQLSTATE %s)",
                    getattr(exc.orig, "sqlstate", None))
        # SQLSTATE class 22: a value the database can't store (NUL character, a timestamp
        # or number out of range). Always the input's fault; the transaction is discarded.
        return error_response(422, "invalid_value",
                              "A value is outside what can be stored (e.g. a NUL character "
                              "or an out-of-range date or number).")

    @app.errorhandler(IntegrityError)
    def _integrity(exc: IntegrityError) -> Response:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate != "23503":  # not a foreign-key violation: a bug, answered with 500
            raise exc
        # The record a write hangs from was deleted while the request ran (an erasure, a
        # consent withdrawal that deleted a conversation): nothing was written.
        log.info("a referenced record vanished during the request (SQLSTATE %s)", sqlstate)
        return error_response(404, "not_found", "A record this request refers to no longer "
                                                "exists; nothing was written.")

    @app.errorhandler(StaleDataError)
    def _stale(_exc: StaleDataError) -> Response:
        return error_response(412, "precondition_failed",
                              "The record was changed by someone else; reload it and retry.")

"""Structured JSON logs with request id and tenant id; never PII or clinical text.

Only these fields are emitted: time, level, logger, message, request_id, tenant_id,
and, for access lines, method, route (the URL rule, not the path), status, duration_ms.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from flask import Flask, Response, g, has_request_context, request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_FIELDS = ("method", "route", "status", "duration_ms", "tenant_id", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context():
            entry["request_id"] = g.get("request_id")
            if g.get("client_request_id"):
                entry["client_request_id"] = g.client_request_id
            actor = g.get("actor")
            if actor is not None and actor.tenant_id is not None:
                entry["tenant_id"] = str(actor.tenant_id)
        for key in _FIELDS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages can carry values of the failing request.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def request_fields() -> dict[str, str]:
    """The server's request id and the caller's tenant id of the current request (empty
    outside one, or before authentication): what logs and telemetry name a request by."""
    if not has_request_context():
        return {}
    fields = {}
    if g.get("request_id"):
        fields["request_id"] = str(g.request_id)
    actor = g.get("actor")
    if actor is not None and actor.tenant_id is not None:  # a billing principal has none
        fields["tenant_id"] = str(actor.tenant_id)
    return fields


# One JSON handler per process, however many apps it creates (tests create many).
class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_handler = _StderrHandler()
_handler.setFormatter(JsonFormatter())


def init_app(app: Flask) -> None:
    root = logging.getLogger()
    if not app.testing:
        # A served app logs JSON only: no other root handler may print a record in plain
        # text (with the exception text this formatter deliberately leaves out). The
        # Azure Monitor handler is attached after this (api.telemetry).
        root.handlers = [_handler]
    elif _handler not in root.handlers:  # tests: keep pytest's handlers, add ours once
        root.addHandler(_handler)
    root.setLevel(app.config["LOG_LEVEL"])
    app.logger.handlers = []
    access = logging.getLogger("clinai.access")

    @app.before_request
    def _start() -> None:
        # The server's own id names the request in logs, audit rows and the response; the
        # caller's X-Request-ID, if usable, is kept beside it (never instead of it: a
        # caller must not choose the id its actions are audited under).
        given = request.headers.get("X-Request-ID", "")
        g.request_id = uuid.uuid4().hex
        g.client_request_id = given if _REQUEST_ID.match(given) else None
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        started = g.get("started")
        access.info("request", extra={
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
        })
        return response

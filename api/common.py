"""Small pieces every resource uses: ETags, audit events, request ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from flask import Response, g, request

from api.auth import principal
from api.db import AUDIT_KEY, session
from api.errors import abort
from api.pagination import ReadAudit


def etag_of(version: int, record_id: uuid.UUID) -> str:
    return f'"{record_id.hex}.{version}"'


def require_if_match() -> str:
    """Return the request's If-Match value, or stop with 428 when it is missing."""
    value = request.headers.get("If-Match")
    if not value:
        abort(428, "precondition_required",
              "Send the record's ETag in If-Match to change it.")
    return value


def check_if_match(expected: str, given: str) -> None:
    tags = {t.strip() for t in given.split(",")}
    if expected not in tags and "*" not in tags:
        abort(412, "precondition_failed",
              "The record was changed since you read it; reload it and retry.")


def with_etag(response: Response, version: int, record_id: uuid.UUID) -> Response:
    response.headers["ETag"] = etag_of(version, record_id)
    return response


def audit(action: str, resource_type: str, ids: Iterable[uuid.UUID]) -> None:
    """Append an audit event to the request's transaction (no clinical text, ever).

    The row is written right before the commit, in the same round trip
    (``api.db.commit_request``); a request that fails writes neither.
    """
    p = principal()
    assert p.role is not None
    session().info.setdefault(AUDIT_KEY, []).append({
        "actor_id": p.user_id,
        "actor_role": p.role,
        "action": action,
        "resource_type": resource_type,
        "resource_ids": list(ids),
        "request_id": g.get("request_id"),
    })


def read_audit(action: str, resource_type: str) -> ReadAudit:
    """The audit event of a list read, written by the page query itself (``fetch_page``)."""
    p = principal()
    assert p.role is not None
    return ReadAudit(actor_id=p.user_id, actor_role=p.role, action=action,
                     resource_type=resource_type, request_id=g.get("request_id"))

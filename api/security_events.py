"""Refused attempts on records, kept as security events an admin can list.

A member's request on a clinical route (clients, consents, sessions, notes, AI drafts,
case chat) or an admin route that ends in 403, 404, 409 or 412 appends one
``security_events`` row in the caller's practice: who, the route's template, the record
ids the path named, the status and error code. Never a body, a query value or clinical
text. It is written by ``api.db`` after the request's own work was rolled back, in the
same session (so in the same tenant context, with no second connection).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, g, request
from sqlalchemy import insert
from sqlalchemy.orm import Session

from models import SecurityEvent
from tenancy.actor import Actor

RECORD_BLUEPRINTS = frozenset({"clients", "consents", "sessions", "notes", "drafts",
                               "conversations", "admin", "exports"})
REFUSALS = frozenset({403, 404, 409, 412})


def refused_attempt(response: Response) -> dict[str, Any] | None:
    """The security event of this request's response, or None if it is not a refusal."""
    actor: Actor | None = g.get("actor")
    if (actor is None or response.status_code not in REFUSALS or request.url_rule is None
            or request.blueprint not in RECORD_BLUEPRINTS):
        return None
    body = response.get_json(silent=True) if response.is_json else None
    error = body.get("error") if isinstance(body, dict) else None
    return {
        "actor_id": actor.user_id, "actor_role": actor.role, "method": request.method,
        "route": request.url_rule.rule[:255], "status": response.status_code,
        "error": error[:64] if isinstance(error, str) else None,
        "resource_ids": [v for v in (request.view_args or {}).values()
                         if isinstance(v, uuid.UUID)],
        "request_id": actor.request_id, "client_request_id": actor.client_request_id,
    }


def record(session: Session, event: dict[str, Any]) -> None:
    """Append ``event`` in its own transaction of ``session`` (already rolled back)."""
    session.execute(insert(SecurityEvent).values(**event))
    session.commit()

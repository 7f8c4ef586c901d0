"""The audit trail's one writer: ``audit(db, actor, action, resource_type, ids)``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.orm import Session

from tenancy.actor import Actor

# Where a session keeps the audit events of its transaction until the commit writes them
# (``api.db.commit_request``).
AUDIT_KEY = "audit_events"


def audit(db: Session, actor: Actor, action: str, resource_type: str,
          ids: Iterable[uuid.UUID]) -> None:
    """Append ``actor``'s audit event to the request's transaction (no clinical text, ever).

    The row is written right before the commit, in the same round trip
    (``api.db.commit_request``); a request that fails writes neither. A list's event is
    written by its page statement instead (``api.pagination.ReadAudit``).
    """
    db.info.setdefault(AUDIT_KEY, []).append({
        "actor_id": actor.user_id,
        "actor_role": actor.role,
        "action": action,
        "resource_type": resource_type,
        "resource_ids": list(ids),
        "request_id": actor.request_id,
        "client_request_id": actor.client_request_id,
    })

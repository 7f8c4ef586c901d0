"""Small pieces every resource uses: ETags, audit events (``api.audit``), masking."""

from __future__ import annotations

import uuid
from typing import Any, Protocol, TypeVar

from flask import current_app, g, request
from sqlalchemy.orm import Session

from api.audit import audit
from api.clients.operations import pseudonymizer_for
from api.consents.operations import require_ai_consent
from api.db import session
from api.errors import abort
from api.practice_rules import practice_rules
from llm.pseudonymize import Pseudonymizer
from models import Client
from tenancy.actor import Actor


class Versioned(Protocol):
    """A record with an optimistic-locking version (SQLAlchemy ``version_id_col``)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=Versioned)


def etag_of(record: Versioned) -> str:
    """The record's ETag as served (quoted): its id and version."""
    return f'"{record.id.hex}.{record.version}"'


def with_etag(record: V) -> tuple[V, dict[str, str]]:
    """The view's return value: the record, serialised by ``@blp.response``, and its ETag."""
    return record, {"ETag": etag_of(record)}


def require_if_match() -> frozenset[str]:
    """Return the request's If-Match tags, or stop with 428 when the header is missing.

    Split by hand, not with werkzeug's ``request.if_match``: that parser accepts unquoted
    tags, honours ``*`` only alone and reads a malformed header as no header (a 428 where
    a 412 is right). Here a tag must be sent exactly as the ETag was served.
    """
    value = request.headers.get("If-Match", "")
    if not value.strip():
        abort(428, "precondition_required",
              "Send the record's ETag in If-Match to change it.")
    return frozenset(tag.strip() for tag in value.split(","))


def check_if_match(record: Versioned, tags: frozenset[str]) -> None:
    """Stop with 412 unless ``tags`` hold ``record``'s ETag as served.

    ``*`` matches nothing here: it would skip the lost-update check, so a change to a
    clinical record must name the version the client read.
    """
    if etag_of(record) not in tags:
        if "*" in tags:
            abort(412, "precondition_failed",
                  "If-Match: * is not accepted; send the ETag of the version you read.")
        abort(412, "precondition_failed",
              "The record was changed since you read it; reload it and retry.")


def mask_for_model(db: Session, actor: Actor, client: Client,
                   messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Pseudonymizer]:
    """The messages as the model may see them, and the pseudonymiser that restores the
    reply. Which other clients were masked (their ids, never the text) is audited with
    the request, before anything is sent."""
    pseudonymizer = pseudonymizer_for(
        db, client, [m["content"] for m in messages if isinstance(m.get("content"), str)])
    masked = pseudonymizer.pseudonymize_messages(messages)
    if pseudonymizer.masked:
        audit(db, actor, "client.mask", "client", sorted(pseudonymizer.masked))
    return masked, pseudonymizer


def retention_years() -> int:
    """The calling practice's retention period, read once per request."""
    years: int | None = g.get("clinai_retention_years")
    if years is None:
        years = practice_rules(session(), current_app.config["RECORD_RETENTION_YEARS"]
                               ).record_retention_years
        g.clinai_retention_years = years
    return years


def ai_gate(db: Session, client: Client) -> bool:
    """The AI routes' check before anything is masked or reserved: the client is not
    restricted and, where the practice requires it, consents
    (``api.consents.operations.require_ai_consent``). Return whether consent was required
    (the save checks it again)."""
    return require_ai_consent(
        db, client, practice_rules(db, current_app.config["RECORD_RETENTION_YEARS"]))

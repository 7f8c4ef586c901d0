"""Clinical notes: sectioned by format, immutable once signed."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from api.clients.operations import check_restriction
from api.domain import DomainError
from api.pagination import PageQuery, ReadAudit, fetch_page, page_query
from api.sessions.operations import visible_sessions
from models import Client, Note, TherapySession
from models.note import NOTE_FORMATS
from tenancy.actor import Actor


def visible_notes(actor: Actor) -> Select[Note]:
    """Notes of the sessions ``p`` may see (of the clients ``p`` may see)."""
    return select(Note).where(
        Note.session_id.in_(visible_sessions(actor).with_only_columns(TherapySession.id)))


def get_note(db: Session, actor: Actor, note_id: uuid.UUID, *, write: bool = False) -> Note:
    """A note of a client the caller may see, else 404; ``write`` as in ``get_client``."""
    note = db.scalars(visible_notes(actor).where(Note.id == note_id)).one_or_none()
    if note is None:
        raise DomainError("not_found", "No such note.")
    if actor.is_admin:  # only admins reach restricted clients
        client_id, restricted_at = db.execute(
            select(Client.id, Client.restricted_at)
            .join(TherapySession, TherapySession.client_id == Client.id)
            .where(TherapySession.id == note.session_id)).one()
        check_restriction(db, actor, client_id, restricted_at, write=write)
    return note


def check_sections(note_format: str, content: dict[str, str]) -> None:
    """Stop with 422 unless ``content`` uses only the sections of ``note_format``."""
    allowed = NOTE_FORMATS[note_format]
    unknown = sorted(set(content) - set(allowed))
    if unknown:
        raise DomainError(
            "validation_failed", f"{note_format} notes have the sections {', '.join(allowed)}.",
            errors={"json": {"content": {k: ["Unknown section."] for k in unknown}}})


@functools.cache
def _note_pages() -> PageQuery:
    return page_query(select(Note).where(Note.session_id == bindparam("session_id")),
                      order_by=(Note.created_at, Note.id))


def list_notes(db: Session, record: TherapySession, *, offset: int, limit: int,
               audit: ReadAudit) -> tuple[list[Note], int]:
    return fetch_page(db, _note_pages(), params={"session_id": record.id}, offset=offset,
                      limit=limit, audit=audit)


def create_note(db: Session, actor: Actor, session_id: uuid.UUID, data: dict[str, Any], *,
                source: str = "manual") -> Note:
    """Write a draft note of a visible session (manual, or drafted by the model)."""
    check_sections(data["format"], data["content"])
    note = Note(session_id=session_id, author_id=actor.user_id, source=source, status="draft",
                **data)
    db.add(note)
    db.flush()
    db.refresh(note)
    return note


def _ensure_draft(note: Note) -> None:
    if note.status == "signed":
        raise DomainError("note_signed", "A signed note cannot be changed.")


def update_note(db: Session, note: Note, data: dict[str, Any]) -> Note:
    _ensure_draft(note)
    # Sections sent replace those sections; sections not sent are kept.
    content = {**note.content, **data.get("content", {})}
    new_format = data.get("format", note.format)
    check_sections(new_format, content)
    note.format = new_format
    note.content = content
    db.flush()
    db.refresh(note)
    return note


def sign_note(db: Session, actor: Actor, note: Note) -> Note:
    """Sign a draft as the caller; a signed note is final. Only the note's author or the
    client's assigned therapist may sign (an admin who can read it may not, unless one
    of them): a signature says who answers for the record."""
    if actor.user_id != note.author_id:
        assigned = db.scalar(select(Client.assigned_therapist_id)
                             .join(TherapySession, TherapySession.client_id == Client.id)
                             .where(TherapySession.id == note.session_id))
        if actor.user_id != assigned:
            raise DomainError("not_note_author", "Only the note's author or the client's "
                              "assigned therapist may sign it.")
    _ensure_draft(note)
    note.status = "signed"
    note.signed_by = actor.user_id
    note.signed_at = dt.datetime.now(dt.UTC)
    db.flush()
    db.refresh(note)
    return note

"""Clinical notes: sectioned by format, immutable once signed, corrected by amendments.

A signed note's row keeps its content as signed, for good. A correction is an
amendment (§ 630f(1) BGB: the original content and the time of the change stay visible):
the sections it replaces, why, by whom and when, appended to ``note_amendments``, which
the app role may not update or delete. A note is served as an ``AmendedNote``: the
current text (the original with every amendment applied in order), the original and the
amendments.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from api.clients.operations import check_restriction, ensure_writable
from api.domain import DomainError
from api.pagination import PageQuery, ReadAudit, fetch_page, page_query
from api.sessions.operations import visible_sessions
from models import Client, Note, NoteAmendment, TherapySession
from models.note import NOTE_FORMATS
from tenancy.actor import Actor


def visible_notes(actor: Actor) -> Select[Note]:
    """Notes of the sessions ``p`` may see (of the clients ``p`` may see)."""
    return select(Note).where(
        Note.session_id.in_(visible_sessions(actor).with_only_columns(TherapySession.id)))


def get_note(db: Session, actor: Actor, note_id: uuid.UUID, *, write: bool = False) -> Note:
    """A note of a client the caller may see, else 404; ``write`` as in ``get_client``."""
    row = db.execute(visible_notes(actor).add_columns(Client.id, Client.restricted_at)
                     .join(TherapySession, TherapySession.id == Note.session_id)
                     .join(Client, Client.id == TherapySession.client_id)
                     .where(Note.id == note_id)).one_or_none()
    if row is None:
        raise DomainError("not_found", "No such note.")
    note: Note = row[0]
    check_restriction(db, actor, row[1], row[2], write=write)
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
        raise DomainError("note_signed", "A signed note cannot be changed; correct it with "
                          "an amendment (POST /notes/{note_id}/amendments).")


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
        _ensure_answers_for(actor, note, _client_of(db, note))
    _ensure_draft(note)
    note.status = "signed"
    note.signed_by = actor.user_id
    note.signed_at = dt.datetime.now(dt.UTC)
    db.flush()
    db.refresh(note)
    return note


def _client_of(db: Session, note: Note) -> Client:
    client = db.scalars(select(Client)
                        .join(TherapySession, TherapySession.client_id == Client.id)
                        .where(TherapySession.id == note.session_id)).one()
    return client


def _ensure_answers_for(actor: Actor, note: Note, client: Client) -> None:
    """Stop with 403 unless the caller may answer for the note: its author or the
    client's assigned therapist (an admin who is neither may read it, not sign or amend)."""
    if actor.user_id not in (note.author_id, client.assigned_therapist_id):
        raise DomainError("not_note_author", "Only the note's author or the client's "
                          "assigned therapist may sign or amend it.")


# --- Amendments (§ 630f(1) BGB) --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AmendedNote:
    """A note as served: the row as written or signed, and its amendments, oldest first.

    ``content`` is the current text, what a reader must act on; ``original_content`` the
    text as signed (a draft's as written). ``id`` and ``version`` are the note's (ETag).
    """

    note: Note
    amendments: tuple[NoteAmendment, ...] = ()

    @property
    def id(self) -> uuid.UUID:
        return self.note.id

    @property
    def version(self) -> int:
        return self.note.version

    @property
    def original_content(self) -> dict[str, Any]:
        return self.note.content

    @property
    def content(self) -> dict[str, Any]:
        return current_content(self.note.content, self.amendments)


def current_content(original: dict[str, Any],
                    amendments: Sequence[NoteAmendment]) -> dict[str, Any]:
    """The original with each amendment's sections replacing those sections, in order."""
    content = dict(original)
    for amendment in amendments:
        content.update(amendment.content)
    return content


def amendments_of(db: Session, notes: Sequence[Note]) -> dict[uuid.UUID, list[NoteAmendment]]:
    """The amendments of ``notes`` by note id, oldest first: one query for any number of
    notes, none when no note is signed (a draft has no amendments)."""
    signed = [note.id for note in notes if note.status == "signed"]
    found: dict[uuid.UUID, list[NoteAmendment]] = {}
    if not signed:
        return found
    rows = db.scalars(select(NoteAmendment).where(NoteAmendment.note_id.in_(signed))
                      .order_by(NoteAmendment.created_at, NoteAmendment.id))
    for amendment in rows:
        found.setdefault(amendment.note_id, []).append(amendment)
    return found


def served(db: Session, notes: Sequence[Note]) -> list[AmendedNote]:
    """``notes`` as served, each with its amendments (one query for all of them)."""
    found = amendments_of(db, notes)
    return [AmendedNote(note, tuple(found.get(note.id, ()))) for note in notes]


def served_note(db: Session, note: Note) -> AmendedNote:
    return served(db, [note])[0]


def amend_note(db: Session, actor: Actor, note: Note,
               data: dict[str, Any]) -> tuple[AmendedNote, NoteAmendment]:
    """Correct a signed note: append an amendment by the caller with the sections it
    replaces (``data["content"]``) and why (``data["reason"]``); return the note as
    served and the new amendment.

    Only the note's author or the client's assigned therapist may (403), never for a
    restricted client (409 ``client_restricted``), only a signed note (409
    ``note_not_signed``: a draft is changed in place). The note's row keeps its content;
    its version is raised in the same transaction (``UPDATE ... WHERE version = <read>``),
    so of two amendments of the same version one wins and the other is a 412.
    """
    client = _client_of(db, note)
    _ensure_answers_for(actor, note, client)
    ensure_writable(client)
    if note.status != "signed":
        raise DomainError("note_not_signed", "A draft is changed with PATCH; only a signed "
                          "note takes amendments.")
    check_sections(note.format, data["content"])
    note.updated_at = func.now()  # a new version: the ETag the caller read is used up
    db.flush()
    amendment = NoteAmendment(note_id=note.id, content=data["content"],
                              reason=data["reason"], author_id=actor.user_id)
    db.add(amendment)
    db.flush()
    db.refresh(note)
    return served_note(db, note), amendment

"""Clinical notes of a session."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from api.audit import audit
from api.auth import actor, any_member
from api.blueprint import Blueprint
from api.common import check_if_match, require_if_match, with_etag
from api.db import session
from api.examples import NOTE, NOTE_CREATE, NOTE_PATCH, SIGNED_NOTE
from api.notes import operations
from api.notes.schemas import NotePatchSchema, NoteSchema
from api.pagination import ReadAudit
from api.sessions.operations import get_session

blp = Blueprint("notes", __name__, url_prefix="/api/v1",
                description="Clinical notes (SOAP, DAP, BIRP or free). Signed notes are final.")



@blp.route("/sessions/<uuid:session_id>/notes")
class SessionNotes(MethodView):
    @any_member
    @blp.response(200, NoteSchema(many=True), example=[NOTE])
    @blp.paginate()
    @blp.errors("not_found")
    def get(self, session_id: uuid.UUID, pagination_parameters: Any) -> list[Any]:
        """List a session's notes, oldest first.

        Drafts and signed notes, manual and AI-drafted (`source`). 404 when the caller may
        not see the session's client. The read is audited (`note.list`).
        """
        db = session()
        record = get_session(db, actor(), session_id)
        items, total = operations.list_notes(
            db, record, offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            audit=ReadAudit(actor(), "note.list", "note"),
        )
        pagination_parameters.item_count = total
        return items

    @any_member
    @blp.arguments(NoteSchema, example=NOTE_CREATE)
    @blp.response(201, NoteSchema, example=NOTE)
    @blp.etag_header
    @blp.errors("not_found", "client_restricted")
    def post(self, data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Write a note for a session (a draft).

        `content` holds the sections of the `format`: SOAP `subjective`, `objective`,
        `assessment`, `plan`; DAP `data`, `assessment`, `plan`; BIRP `behavior`,
        `intervention`, `response`, `plan`; free `text`. Another section is a 422. The
        note starts as a draft by the caller; sign it to make it final.
        """
        db, p = session(), actor()
        record = get_session(db, p, session_id, write=True)
        note = operations.create_note(db, p, record.id, data)
        audit(session(), actor(), "note.create", "note", [note.id])
        return with_etag(note)


@blp.route("/notes/<uuid:note_id>")
class NotesById(MethodView):
    @any_member
    @blp.response(200, NoteSchema, example=NOTE)
    @blp.etag_header
    @blp.errors("not_found")
    def get(self, note_id: uuid.UUID) -> Any:
        """Show one note.

        404 when the note does not exist or its client is not visible to the caller. The
        read is audited (`note.read`).
        """
        note = operations.get_note(session(), actor(), note_id)
        audit(session(), actor(), "note.read", "note", [note.id])
        return with_etag(note)

    @any_member
    @blp.arguments(NotePatchSchema, example=NOTE_PATCH)
    @blp.response(200, NoteSchema, example={
        **NOTE, "content": {**NOTE["content"], **NOTE_PATCH["content"]}, "version": 2})
    @blp.etag_header
    @blp.if_match
    @blp.errors("not_found", "note_signed", "client_restricted")
    def patch(self, data: dict[str, Any], note_id: uuid.UUID) -> Any:
        """Change a draft note (send the ETag in If-Match).

        Sections sent replace those sections; sections not sent are kept. A signed note
        cannot change (409 `note_signed`). 428 without `If-Match`, 412 when the note
        changed since it was read.
        """
        if_match = require_if_match()
        db = session()
        note = operations.get_note(db, actor(), note_id, write=True)
        check_if_match(note, if_match)
        note = operations.update_note(db, note, data)
        audit(session(), actor(), "note.update", "note", [note.id])
        return with_etag(note)


@blp.route("/notes/<uuid:note_id>/sign")
class NoteSignature(MethodView):
    @any_member
    @blp.response(200, NoteSchema, example=SIGNED_NOTE)
    @blp.etag_header
    @blp.errors("not_found", "not_note_author", "note_signed", "precondition_failed",
                "client_restricted")
    def post(self, note_id: uuid.UUID) -> Any:
        """Sign a draft note; it can no longer change.

        Records who signed and when. Only the note's author or the client's assigned
        therapist may sign (403 `not_note_author`, also for an admin who is neither).
        409 `note_signed` when it is already signed; 412
        `precondition_failed` when someone changed or signed it at the same moment (read
        it again before signing). No body.
        """
        db, p = session(), actor()
        note = operations.sign_note(db, p, operations.get_note(db, p, note_id, write=True))
        audit(session(), actor(), "note.sign", "note", [note.id])
        return with_etag(note)

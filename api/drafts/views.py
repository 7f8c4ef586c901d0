"""AI-drafted notes from a session transcript."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy.orm import Session

from api.auth import any_member, principal
from api.blueprint import Blueprint
from api.clients.operations import pseudonymizer_for
from api.common import audit, with_etag
from api.db import session
from api.errors import abort
from api.examples import AI_NOTE, DRAFT_REQUEST
from api.llm import gateway
from api.notes.operations import create_note
from api.notes.schemas import NoteSchema
from api.sessions.operations import get_session
from api.sse import start_llm_call, stream_reply, wants_event_stream
from llm.prompts import DRAFT_FORMATS, DRAFT_MAX_TOKENS, draft_messages, parse_draft
from models import Client, Note

blp = Blueprint("drafts", __name__, url_prefix="/api/v1",
                description="AI-drafted documentation. Drafts are never signed by the AI.")


class DraftRequestSchema(ma.Schema):
    format = ma.fields.String(required=True,
                              validate=ma.validate.OneOf(DRAFT_FORMATS))


def _save_draft(db: Session, session_id: uuid.UUID, note_format: str, text: str) -> Note:
    note = create_note(db, principal(), session_id,
                       {"format": note_format, "content": parse_draft(note_format, text)},
                       source="ai")
    audit(db, "note.create", "note", [note.id])
    return note


@blp.route("/sessions/<uuid:session_id>/note-drafts")
class NoteDrafts(MethodView):
    @any_member
    @blp.arguments(DraftRequestSchema, example=DRAFT_REQUEST)
    @blp.response(201, NoteSchema, example=AI_NOTE)
    @blp.etag_header
    @blp.event_stream("note_id")
    @blp.errors("not_found", "no_transcript")
    def post(self, data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Draft a note from the session's transcript (status draft, source ai).

        The model sees the transcript with the client's name, contact details and the
        names of the practice's other clients replaced by placeholders; the draft is
        saved as a note with `source` `ai` and `status` `draft` for the therapist to
        review, change and sign. The call is metered against the practice's monthly token
        budget (429 with `Retry-After` when it is used up or a per-minute limit is hit).
        With `Accept: text/event-stream` the draft streams as server-sent events. Offline
        (no `AZURE_OPENAI_ENDPOINT`) a deterministic simulator writes the draft from the
        transcript.
        """
        db, p = session(), principal()
        record = get_session(db, p, session_id)
        if not record.transcript:
            abort(422, "no_transcript", "The session has no transcript to draft from.")
        client = db.get(Client, record.client_id)
        assert client is not None
        pseudonymizer = pseudonymizer_for(db, client)
        messages = draft_messages(data["format"], record.transcript,
                                  modality=record.modality,
                                  duration_minutes=record.duration_minutes)
        audit(session(), "session.read", "therapy_session", [record.id])
        ctx = start_llm_call(db, "note_draft")
        if not wants_event_stream():
            completion = gateway().complete(ctx, messages, max_tokens=DRAFT_MAX_TOKENS,
                                            pseudonymizer=pseudonymizer)
            note = _save_draft(db, record.id, data["format"], completion.text)
            return with_etag(note)
        stream = gateway().stream(ctx, messages, max_tokens=DRAFT_MAX_TOKENS,
                                  pseudonymizer=pseudonymizer)

        def save(stream_db: Session, done: Any) -> tuple[str, str]:
            return "note_id", str(_save_draft(stream_db, record.id, data["format"],
                                              done.text).id)

        return stream_reply(stream, ctx, save)

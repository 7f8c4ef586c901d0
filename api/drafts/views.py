"""AI-drafted notes from a session transcript."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy.orm import Session

from api.audit import audit
from api.auth import actor, any_member
from api.blueprint import Blueprint
from api.common import ai_gate, mask_for_model, with_etag
from api.consents.operations import recheck_before_save
from api.db import commit_request, session
from api.errors import abort
from api.examples import AI_NOTE, DRAFT_REQUEST
from api.llm import gateway
from api.notes.operations import create_note
from api.notes.schemas import NoteSchema
from api.sessions.operations import get_session
from api.sse import stream_reply, wants_event_stream
from llm.prompts import DRAFT_FORMATS, DRAFT_MAX_TOKENS, draft_messages, parse_draft
from models import Client, Note
from tenancy.actor import Actor

blp = Blueprint("drafts", __name__, url_prefix="/api/v1",
                description="AI-drafted documentation. Drafts are never signed by the AI.")


class DraftRequestSchema(ma.Schema):
    format = ma.fields.String(required=True,
                              validate=ma.validate.OneOf(DRAFT_FORMATS))


def _save_draft(db: Session, a: Actor, client_id: uuid.UUID, consent_required: bool,
                session_id: uuid.UUID, note_format: str, text: str) -> Note:
    recheck_before_save(db, client_id, consent_required)
    note = create_note(db, a, session_id,
                       {"format": note_format, "content": parse_draft(note_format, text)},
                       source="ai")
    audit(db, a, "note.create", "note", [note.id])
    return note


@blp.route("/sessions/<uuid:session_id>/note-drafts")
class NoteDrafts(MethodView):
    @any_member
    @blp.arguments(DraftRequestSchema, example=DRAFT_REQUEST)
    @blp.response(201, NoteSchema, example=AI_NOTE)
    @blp.etag_header
    @blp.event_stream("note_id")
    @blp.errors("not_found", "no_transcript", "consent_required", "client_restricted")
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

        Refused before anything reaches the model or the budget: 409 `consent_required`
        while the practice requires consent (`GET /admin/settings`) and the client has no
        current consent to AI assistance (`POST /clients/{client_id}/consents`); 409
        `client_restricted` for a restricted record. A streamed request is refused the
        same way, with a JSON error instead of a stream. If the consent is withdrawn
        while the model writes, the draft is not saved (409 `consent_required`, or a
        `save_failed` event in a stream).
        """
        db, a = session(), actor()
        record = get_session(db, a, session_id, write=True)
        client = db.get(Client, record.client_id)
        assert client is not None
        consent_required = ai_gate(db, client)
        if not record.transcript:
            abort(422, "no_transcript", "The session has no transcript to draft from.")
        messages = draft_messages(data["format"], record.transcript,
                                  modality=record.modality,
                                  duration_minutes=record.duration_minutes)
        audit(db, a, "session.read", "therapy_session", [record.id])
        messages, pseudonymizer = mask_for_model(db, a, client, messages)
        commit_request(db)  # no transaction stays open while the model writes
        if not wants_event_stream():
            completion = gateway().complete(a, "note_draft", messages,
                                            max_tokens=DRAFT_MAX_TOKENS,
                                            pseudonymizer=pseudonymizer,
                                            artifact=("session", record.id))
            note = _save_draft(db, a, client.id, consent_required, record.id, data["format"],
                               completion.text)
            return with_etag(note)
        stream = gateway().stream(a, "note_draft", messages, max_tokens=DRAFT_MAX_TOKENS,
                                  pseudonymizer=pseudonymizer, artifact=("session", record.id))

        def save(stream_db: Session, done: Any) -> tuple[str, str]:
            return "note_id", str(_save_draft(stream_db, a, client.id, consent_required,
                                              record.id, data["format"], done.text).id)

        return stream_reply(stream, a, save)

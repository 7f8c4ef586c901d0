"""Therapy sessions of a client."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from api.audit import audit
from api.auth import actor, any_member
from api.blueprint import Blueprint
from api.clients.operations import get_client
from api.common import check_if_match, require_if_match, with_etag
from api.db import session
from api.examples import SESSION, SESSION_CREATE, SESSION_PATCH
from api.pagination import ReadAudit
from api.sessions import operations
from api.sessions.schemas import TherapySessionPatchSchema, TherapySessionSchema

blp = Blueprint("sessions", __name__, url_prefix="/api/v1",
                description="Therapy sessions. Visible to whoever may see the client.")



@blp.route("/clients/<uuid:client_id>/sessions")
class ClientSessions(MethodView):
    @any_member
    @blp.response(200, TherapySessionSchema(many=True), example=[SESSION])
    @blp.paginate()
    @blp.errors("not_found")
    def get(self, client_id: uuid.UUID, pagination_parameters: Any) -> list[Any]:
        """List a client's sessions, newest first.

        404 when the caller may not see the client. Transcripts are included. The read is
        audited (`session.list`).
        """
        db = session()
        client = get_client(db, actor(), client_id)
        items, total = operations.list_sessions(
            db, client, offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            audit=ReadAudit(actor(), "session.list", "therapy_session"),
        )
        pagination_parameters.item_count = total
        return items

    @any_member
    @blp.arguments(TherapySessionSchema, example=SESSION_CREATE)
    @blp.response(201, TherapySessionSchema, example=SESSION)
    @blp.etag_header
    @blp.errors("not_found", "client_restricted")
    def post(self, data: dict[str, Any], client_id: uuid.UUID) -> Any:
        """Record a session for a client.

        `started_at` needs a time zone; `modality` is `in_person`, `video` or `phone`; the
        optional `transcript` (up to 200,000 characters) is what AI note drafts are made
        from. 404 when the caller may not see the client.
        """
        db = session()
        client = get_client(db, actor(), client_id, write=True)
        record = operations.create_session(db, client, data)
        audit(session(), actor(), "session.create", "therapy_session", [record.id])
        return with_etag(record)


@blp.route("/sessions/<uuid:session_id>")
class SessionsById(MethodView):
    @any_member
    @blp.response(200, TherapySessionSchema, example=SESSION)
    @blp.etag_header
    @blp.errors("not_found")
    def get(self, session_id: uuid.UUID) -> Any:
        """Show one session.

        404 when the session does not exist or its client is not visible to the caller.
        The read is audited (`session.read`).
        """
        record = operations.get_session(session(), actor(), session_id)
        audit(session(), actor(), "session.read", "therapy_session", [record.id])
        return with_etag(record)

    @any_member
    @blp.arguments(TherapySessionPatchSchema, example=SESSION_PATCH)
    @blp.response(200, TherapySessionSchema,
                  example={**SESSION, **SESSION_PATCH, "version": 2})
    @blp.etag_header
    @blp.if_match
    @blp.errors("not_found", "client_restricted")
    def patch(self, data: dict[str, Any], session_id: uuid.UUID) -> Any:
        """Change a session (send the ETag in If-Match).

        Only the fields sent change. 428 without `If-Match`, 412 when the session changed
        since it was read.
        """
        if_match = require_if_match()
        db = session()
        record = operations.get_session(db, actor(), session_id, write=True)
        check_if_match(record, if_match)
        record = operations.update_session(db, record, data)
        audit(session(), actor(), "session.update", "therapy_session", [record.id])
        return with_etag(record)

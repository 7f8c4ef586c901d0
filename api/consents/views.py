"""A client's consent to AI assistance (GDPR Art. 6(1)(a), 9(2)(a))."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from api.audit import audit
from api.auth import actor, any_member
from api.blueprint import Blueprint
from api.clients.operations import get_client
from api.consents import operations
from api.consents.schemas import ConsentCreateSchema, ConsentSchema
from api.db import session
from api.domain import DomainError
from api.examples import CONSENT, CONSENT_CREATE, CONSENTS
from api.pagination import ReadAudit
from models.consent import CONSENT_PURPOSES

blp = Blueprint("consents", __name__, url_prefix="/api/v1/clients",
                description="A client's consent to AI assistance, with its history.")


@blp.route("/<uuid:client_id>/consents")
class ClientConsents(MethodView):
    @any_member
    @blp.response(200, ConsentSchema(many=True), example=CONSENTS)
    @blp.paginate()
    @blp.errors("not_found")
    def get(self, client_id: uuid.UUID, pagination_parameters: Any) -> list[Any]:
        """List the client's consents, newest first, withdrawn ones too.

        The whole history: who recorded each consent and when, and who recorded its
        withdrawal and when (`current` is true for the one in force). 404 when the caller
        may not see the client. The read is audited (`consent.list`).
        """
        db = session()
        client = get_client(db, actor(), client_id)
        items, total = operations.list_consents(
            db, client, offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            audit=ReadAudit(actor(), "consent.list", "consent"))
        pagination_parameters.item_count = total
        return items

    @any_member
    @blp.arguments(ConsentCreateSchema, example=CONSENT_CREATE)
    @blp.response(201, ConsentSchema, example=CONSENT)
    @blp.alt_response(200, schema=ConsentSchema, example=CONSENT,
                      description="The client has consented already: the current consent, "
                                  "unchanged")
    @blp.errors("not_found", "client_restricted")
    def post(self, data: dict[str, Any], client_id: uuid.UUID) -> Any:
        """Record the client's consent to AI assistance.

        Record it once the client has agreed (keep the signed form in the client's file and
        name it in `document_reference`, without clinical text). The caller is kept as
        `recorded_by`, the time as `given_at`. 201 with the new consent; 200 with the
        current one, unchanged, when the client has consented already (no second consent
        is recorded, so a retry is safe). While the practice requires consent
        (`GET /admin/settings`), note drafts and case chat for a client answer 409
        `consent_required` until it is recorded. 404 when the caller may not see the
        client; 409 `client_restricted` for a restricted record. Audited
        (`consent.record`, with the consent and client ids).
        """
        db, a = session(), actor()
        client = get_client(db, a, client_id)
        consent, created = operations.record_consent(
            db, a, client, data["purpose"], data.get("document_reference"))
        audit(db, a, "consent.record", "consent", [consent.id, client.id])
        return consent, 201 if created else 200


@blp.route("/<uuid:client_id>/consents/<string:purpose>")
class ClientConsentByPurpose(MethodView):
    @any_member
    @blp.response(204)
    @blp.errors("not_found", "client_restricted")
    def delete(self, client_id: uuid.UUID, purpose: str) -> None:
        """Withdraw the client's consent (purpose `ai_assistance`).

        The current consent gets `withdrawn_at` and `withdrawn_by` (it stays in the
        history). In the same transaction every case-chat conversation of the client is
        deleted with its messages, and so are the client's unsigned AI drafts (notes with
        `source` `ai` and `status` `draft`); signed notes and notes written by hand stay,
        they are the therapist's record. From then on the AI routes answer 409
        `consent_required` for the client while the practice requires consent. 409
        `client_restricted` for a restricted record (nothing of it may change; no AI
        processes it while it is restricted). 404 when the caller may not see the client, the
        purpose is unknown, or there is no current consent. Audited (`consent.withdraw`;
        `conversation.delete` and `note.delete` with the ids of what was deleted).
        """
        db, a = session(), actor()
        client = get_client(db, a, client_id)
        if purpose not in CONSENT_PURPOSES:
            raise DomainError("not_found", "No such consent purpose.")
        consent, conversations, notes = operations.withdraw_consent(db, a, client, purpose)
        audit(db, a, "consent.withdraw", "consent", [consent.id, client.id])
        if conversations:
            audit(db, a, "conversation.delete", "conversation", conversations)
        if notes:
            audit(db, a, "note.delete", "note", notes)

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from models import ClientConsent
from models.consent import CONSENT_PURPOSES


class ConsentCreateSchema(ma.Schema):
    purpose = ma.fields.String(required=True, validate=validate.OneOf(CONSENT_PURPOSES),
                               metadata={"description": "What the client consents to"})
    document_reference = ma.fields.String(
        allow_none=True, validate=validate.Length(min=1, max=255),
        metadata={"description": "Where the signed consent is kept (no clinical text), "
                                 "e.g. `Einwilligung vom 3.11.2026, Akte S. 4`"})


class ConsentSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    client_id = ma.fields.UUID(dump_only=True)
    purpose = ma.fields.String(dump_only=True)
    document_reference = ma.fields.String(dump_only=True, allow_none=True)
    recorded_by = ma.fields.String(dump_only=True, metadata={
        "description": "user_id of the member who recorded the consent"})
    given_at = ma.fields.DateTime(dump_only=True, metadata={
        "description": "When the consent was recorded"})
    withdrawn_at = ma.fields.DateTime(dump_only=True, allow_none=True, metadata={
        "description": "When it was withdrawn; null while it is current"})
    withdrawn_by = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "user_id of the member who recorded the withdrawal"})
    current = ma.fields.Method("_current", dump_only=True, metadata={
        "type": "boolean", "description": "True until the consent is withdrawn"})

    def _current(self, consent: ClientConsent) -> bool:
        return consent.withdrawn_at is None

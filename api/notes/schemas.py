from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from models.note import NOTE_FORMATS

MAX_SECTION_CHARS = 50_000


class NoteSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    session_id = ma.fields.UUID(dump_only=True)
    format = ma.fields.String(required=True, validate=validate.OneOf(list(NOTE_FORMATS)))
    content = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(validate=validate.Length(max=MAX_SECTION_CHARS)),
        required=True,
        metadata={"description": "Sections of the format: SOAP subjective/objective/assessment/"
                                 "plan; DAP data/assessment/plan; BIRP behavior/intervention/"
                                 "response/plan; free text"},
    )
    status = ma.fields.String(dump_only=True)
    source = ma.fields.String(dump_only=True)
    author_id = ma.fields.String(dump_only=True)
    signed_by = ma.fields.String(dump_only=True, allow_none=True,
                                 metadata={"description": "Who signed it; null for a draft"})
    signed_at = ma.fields.DateTime(dump_only=True, allow_none=True,
                                   metadata={"description": "When it was signed; null for a draft"})
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)


class NotePatchSchema(NoteSchema):
    format = ma.fields.String(validate=validate.OneOf(list(NOTE_FORMATS)))
    content = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(validate=validate.Length(max=MAX_SECTION_CHARS)),
    )

from __future__ import annotations

import datetime as dt

import marshmallow as ma
from marshmallow import validate

from models.therapy_session import MODALITIES

MAX_TRANSCRIPT_CHARS = 200_000


def _plausible_time(value: dt.datetime) -> None:
    if not 1900 <= value.year <= 2200:
        raise ma.ValidationError("Must be between the years 1900 and 2200.")


class TherapySessionSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    client_id = ma.fields.UUID(dump_only=True)
    started_at = ma.fields.AwareDateTime(required=True, validate=_plausible_time)
    duration_minutes = ma.fields.Integer(required=True, validate=validate.Range(min=1, max=600))
    modality = ma.fields.String(required=True, validate=validate.OneOf(MODALITIES))
    transcript = ma.fields.String(allow_none=True,
                                  validate=validate.Length(max=MAX_TRANSCRIPT_CHARS),
                                  metadata={"description": "Optional session transcript"})
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)


class TherapySessionPatchSchema(TherapySessionSchema):
    started_at = ma.fields.AwareDateTime(validate=_plausible_time)
    duration_minutes = ma.fields.Integer(validate=validate.Range(min=1, max=600))
    modality = ma.fields.String(validate=validate.OneOf(MODALITIES))

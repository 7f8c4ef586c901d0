from __future__ import annotations

import datetime as dt

import marshmallow as ma
from marshmallow import validate

from models.client import CLIENT_STATUSES


def _plausible_birth_date(value: dt.date) -> None:
    if not dt.date(1900, 1, 1) <= value <= dt.date.today():
        raise ma.ValidationError("Must be between 1900-01-01 and today.")


class ContactSchema(ma.Schema):
    email = ma.fields.Email(validate=validate.Length(max=254), allow_none=True)
    phone = ma.fields.String(validate=validate.Length(max=40), allow_none=True)
    address = ma.fields.String(validate=validate.Length(max=500), allow_none=True)


class ClientSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    first_name = ma.fields.String(required=True, validate=validate.Length(min=1, max=255))
    last_name = ma.fields.String(required=True, validate=validate.Length(min=1, max=255))
    date_of_birth = ma.fields.Date(allow_none=True, validate=_plausible_birth_date)
    contact = ma.fields.Nested(ContactSchema, load_default=dict)
    assigned_therapist_id = ma.fields.String(
        allow_none=True, validate=validate.Length(min=1, max=255),
        metadata={"description": "user_id of a member; therapists may only assign themselves"},
    )
    status = ma.fields.String(load_default="active", validate=validate.OneOf(CLIENT_STATUSES))
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)


class ClientPatchSchema(ClientSchema):
    first_name = ma.fields.String(validate=validate.Length(min=1, max=255))
    last_name = ma.fields.String(validate=validate.Length(min=1, max=255))
    contact = ma.fields.Nested(ContactSchema)
    status = ma.fields.String(validate=validate.OneOf(CLIENT_STATUSES))


class ClientQueryArgsSchema(ma.Schema):
    status = ma.fields.String(validate=validate.OneOf(CLIENT_STATUSES))

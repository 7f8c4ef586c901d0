from __future__ import annotations

import datetime as dt

import marshmallow as ma
from marshmallow import validate

from api.common import retention_years
from api.practice_rules import retain_until
from models import Client
from models.client import CLIENT_STATUSES
from models.erasure import OVERRIDE_REASONS


def _plausible_birth_date(value: dt.date) -> None:
    if not dt.date(1900, 1, 1) <= value <= dt.date.today():
        raise ma.ValidationError("Must be between 1900-01-01 and today.")


def _not_in_future(value: dt.date) -> None:
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
    status = ma.fields.String(load_default="active", validate=validate.OneOf(CLIENT_STATUSES),
                              metadata={"description": "`discharged` needs `treatment_ended_on`"})
    treatment_ended_on = ma.fields.Date(
        allow_none=True, validate=_not_in_future, metadata={
            "description": "When the treatment ended (set by admins). The record is kept until "
                           "`retain_until` (§ 630f(3) BGB)."})
    retain_until = ma.fields.Method("_retain_until", dump_only=True, allow_none=True, metadata={
        "type": "string", "format": "date",
        "description": "Last day the record must be kept: `treatment_ended_on` plus the "
                       "practice's retention period (10 years by default); null while "
                       "treatment is ongoing"})
    restricted = ma.fields.Method("_restricted", dump_only=True, metadata={
        "type": "boolean",
        "description": "Processing is restricted (GDPR Art. 18): only admins see the "
                       "client, nothing can change and no AI is used"})
    restricted_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    restriction_reason = ma.fields.String(dump_only=True, allow_none=True)
    version = ma.fields.Integer(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)

    def _retain_until(self, client: Client) -> str | None:
        if client.treatment_ended_on is None:  # ongoing: no need to read the settings
            return None
        until = retain_until(client.treatment_ended_on, retention_years())
        return until.isoformat() if until is not None else None

    def _restricted(self, client: Client) -> bool:
        return client.restricted_at is not None


class ClientPatchSchema(ClientSchema):
    first_name = ma.fields.String(validate=validate.Length(min=1, max=255))
    last_name = ma.fields.String(validate=validate.Length(min=1, max=255))
    contact = ma.fields.Nested(ContactSchema)
    status = ma.fields.String(validate=validate.OneOf(CLIENT_STATUSES))


class ClientQueryArgsSchema(ma.Schema):
    status = ma.fields.String(validate=validate.OneOf(CLIENT_STATUSES))
    include_restricted = ma.fields.Boolean(load_default=False, metadata={
        "description": "Admins only: list restricted clients too"})


class RestrictionSchema(ma.Schema):
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=2000),
                              metadata={"description": "Why processing is restricted, e.g. "
                                                       "the client's erasure request while "
                                                       "the record must still be kept"})


class ErasureSchema(ma.Schema):
    confirm = ma.fields.String(required=True, metadata={
        "description": "The client's id, typed again: nothing is erased without it"})
    override_retention = ma.fields.String(
        validate=validate.OneOf(OVERRIDE_REASONS), metadata={
            "description": "Erase although the retention period runs: `created_in_error`, "
                           "`legal_order` or `other_legal_basis`"})


class TombstoneSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    erased_at = ma.fields.DateTime(dump_only=True)
    erased_by = ma.fields.String(dump_only=True)
    reason = ma.fields.String(dump_only=True)
    record_counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(),
                                   dump_only=True)
    retain_until = ma.fields.Date(dump_only=True, allow_none=True)
    events_repointed = ma.fields.Integer(dump_only=True, metadata={
        "description": "Audit and security events that named the client's records and "
                       "now name this tombstone"})

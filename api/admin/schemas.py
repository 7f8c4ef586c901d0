from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import validate

from models.membership import ROLES


class InvitationCreateSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=validate.Length(max=254))
    role = ma.fields.String(required=True, validate=validate.OneOf(ROLES))


class InvitationSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    code = ma.fields.String(dump_only=True, metadata={
        "description": "Single-use code; shown once, only its hash is stored"})
    email = ma.fields.String(dump_only=True)
    role = ma.fields.String(dump_only=True)
    expires_at = ma.fields.DateTime(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class PendingInvitationSchema(ma.Schema):
    """An invitation not yet accepted and not expired; never its code."""

    id = ma.fields.UUID(dump_only=True)
    email = ma.fields.String(dump_only=True)
    role = ma.fields.String(dump_only=True)
    expires_at = ma.fields.DateTime(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class MemberSchema(ma.Schema):
    user_id = ma.fields.String(dump_only=True)
    role = ma.fields.String(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)


class MemberPatchSchema(ma.Schema):
    role = ma.fields.String(required=True, validate=validate.OneOf(ROLES))


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    occurred_at = ma.fields.DateTime(dump_only=True)
    actor_id = ma.fields.String(dump_only=True)
    actor_role = ma.fields.String(dump_only=True)
    action = ma.fields.String(dump_only=True)
    resource_type = ma.fields.String(dump_only=True)
    resource_ids = ma.fields.List(ma.fields.UUID(), dump_only=True)
    request_id = ma.fields.String(dump_only=True, metadata={
        "description": "The server's id of the request (its `X-Request-ID` response header)"})
    client_request_id = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "The `X-Request-ID` the caller sent, if usable; never the audit key"})


class AuditQueryArgsSchema(ma.Schema):
    resource_id = ma.fields.UUID()
    actor_id = ma.fields.String(validate=validate.Length(max=255))
    action = ma.fields.String(validate=validate.Length(max=64))


class SecurityEventSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    occurred_at = ma.fields.DateTime(dump_only=True)
    actor_id = ma.fields.String(dump_only=True)
    actor_role = ma.fields.String(dump_only=True)
    method = ma.fields.String(dump_only=True)
    route = ma.fields.String(dump_only=True, metadata={
        "description": "The route's template, e.g. `/api/v1/clients/<uuid:client_id>`"})
    status = ma.fields.Integer(dump_only=True)
    error = ma.fields.String(dump_only=True, allow_none=True)
    resource_ids = ma.fields.List(ma.fields.UUID(), dump_only=True, metadata={
        "description": "The record ids the request's path named (they may not exist)"})
    request_id = ma.fields.String(dump_only=True, allow_none=True)
    client_request_id = ma.fields.String(dump_only=True, allow_none=True)


class SecurityQueryArgsSchema(ma.Schema):
    actor_id = ma.fields.String(validate=validate.Length(max=255))
    resource_id = ma.fields.UUID()


def _this_month() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m")


class UsageQueryArgsSchema(ma.Schema):
    period = ma.fields.String(
        load_default=_this_month,
        validate=validate.Regexp(r"^(19|20)\d\d-(0[1-9]|1[0-2])(?!\n)$",  # no trailing newline
                                 error="Use YYYY-MM."),
        metadata={"description": "Month, YYYY-MM (default: the current month, UTC)"})


class UsageExportArgsSchema(UsageQueryArgsSchema):
    format = ma.fields.String(
        load_default="csv", validate=validate.OneOf(["csv", "json"]),
        metadata={"description": "`csv` (default) or `json`"})


def _money(description: str) -> ma.fields.Decimal:
    # An exact decimal, served as a string (JSON numbers are floats to most clients).
    return ma.fields.Decimal(as_string=True, metadata={
        "type": "string", "format": "decimal", "pattern": r"^-?\d+(\.\d+)?$",
        "description": description, "example": "0.00495144"})


class UsageTotalsSchema(ma.Schema):
    prompt_tokens = ma.fields.Integer()
    completion_tokens = ma.fields.Integer()
    total_tokens = ma.fields.Integer()
    estimated_tokens = ma.fields.Integer(metadata={
        "description": "The part of `total_tokens` counted locally because the provider "
                       "reported no usage (a stream that broke off)"})
    cost = _money("Cost in EUR at the price version valid when each call started "
                  "(`LLM_PRICES_FILE`), an exact decimal as a string")
    calls = ma.fields.Integer()


class UsageBudgetSchema(ma.Schema):
    monthly_tokens = ma.fields.Integer()
    used = ma.fields.Integer()
    reserved = ma.fields.Integer()
    remaining = ma.fields.Integer()


class UsageSchema(UsageTotalsSchema):
    period = ma.fields.String()
    currency = ma.fields.String(metadata={"description": "`EUR`, the currency of `cost`"})
    legacy_cost_usd = _money(
        "Cost of calls rated before prices were versioned (USD list prices), not included "
        "in `cost`; 0 from then on")
    by_feature = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(UsageTotalsSchema))
    by_model = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(UsageTotalsSchema))
    by_day = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(UsageTotalsSchema))
    budget = ma.fields.Nested(UsageBudgetSchema)


class ArtifactUsageSchema(ma.Schema):
    kind = ma.fields.String(metadata={
        "description": "`session` (note drafts for a therapy session) or `conversation` "
                       "(case chat)"})
    id = ma.fields.UUID(metadata={"description": "The session's or conversation's id"})
    feature = ma.fields.String(metadata={"description": "`note_draft` or `case_chat`"})
    requests = ma.fields.Integer(metadata={"description": "AI calls, whatever their outcome"})
    prompt_tokens = ma.fields.Integer(metadata={"description": "Provider-reported"})
    completion_tokens = ma.fields.Integer(metadata={"description": "Provider-reported"})
    cached_tokens = ma.fields.Integer(metadata={
        "description": "Provider-reported prompt tokens served from the cache (part of "
                       "`prompt_tokens`)"})
    estimated_tokens = ma.fields.Integer(metadata={
        "description": "Prompt and completion tokens counted locally for calls whose usage "
                       "the provider never reported; not part of the other counts"})
    cost = _money("Cost of these calls at the price versions they were rated with, an exact "
                  "decimal as a string")
    currency = ma.fields.String(metadata={"description": "`EUR`"})


class OffboardingSchema(ma.Schema):
    confirm = ma.fields.String(required=True, validate=validate.Length(max=255), metadata={
        "description": "The practice's name, exactly as registered"})


class OffboardingResultSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    status = ma.fields.String(dump_only=True, metadata={"description": "`erased`"})


MAX_RECORD_RETENTION_YEARS = 100


def _retention_years(value: int) -> None:
    minimum = int(current_app.config["RECORD_RETENTION_YEARS"])
    if not minimum <= value <= MAX_RECORD_RETENTION_YEARS:
        raise ma.ValidationError(
            f"Must be between {minimum} (the legal minimum) and {MAX_RECORD_RETENTION_YEARS}.")


class SettingsSchema(ma.Schema):
    ai_consent_required = ma.fields.Boolean(dump_only=True, metadata={
        "description": "Note drafts and case chat need the client's current consent "
                       "(`POST /clients/{client_id}/consents`); on by default"})
    record_retention_years = ma.fields.Integer(dump_only=True, metadata={
        "description": "Years a record is kept after treatment ended (the practice's "
                       "setting, never less than the minimum)"})
    minimum_record_retention_years = ma.fields.Integer(dump_only=True, metadata={
        "description": "The platform's minimum retention period (§ 630f(3) BGB); "
                       "read-only"})


class SettingsPatchSchema(ma.Schema):
    ai_consent_required = ma.fields.Boolean(truthy={True}, falsy={False})
    record_retention_years = ma.fields.Integer(
        strict=True, validate=_retention_years,
        metadata={"description": "At least `minimum_record_retention_years`, at most 100",
                  "minimum": 10, "maximum": MAX_RECORD_RETENTION_YEARS})

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError(
                "Send ai_consent_required, record_retention_years or both.")

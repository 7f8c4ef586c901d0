"""Schemas of the billing read."""

from __future__ import annotations

import marshmallow as ma


def _cost(description: str) -> ma.fields.Decimal:
    # An exact decimal, served as a string (JSON numbers are floats to most clients).
    return ma.fields.Decimal(as_string=True, metadata={
        "type": "string", "format": "decimal", "pattern": r"^-?\d+(\.\d+)?$",
        "description": description, "example": "0.01483920"})


class BillingTokensSchema(ma.Schema):
    requests = ma.fields.Integer(metadata={
        "description": "Metered AI calls (failed ones too: their tokens are 0 or estimated)"})
    prompt_tokens = ma.fields.Integer(metadata={
        "description": "Input tokens the provider reported"})
    cached_tokens = ma.fields.Integer(metadata={
        "description": "The part of `prompt_tokens` the provider served from its prompt "
                       "cache"})
    completion_tokens = ma.fields.Integer(metadata={
        "description": "Output tokens the provider reported"})
    estimated_tokens = ma.fields.Integer(metadata={
        "description": "Input plus output tokens counted locally because the provider "
                       "reported no usage (a stream that broke off); never included in "
                       "the three provider-reported counts"})
    cost = _cost("Exact sum of the calls' cost in `currency`, as a string (corrections "
                 "included)")
    correction_requests = ma.fields.Integer(metadata={
        "description": "Of `requests`: calls that started in an earlier month that was "
                       "already closed when they were metered (a late settlement), billed "
                       "here as corrections"})
    correction_cost = _cost("Of `cost`: the corrections' cost")


class BillingPracticeSchema(BillingTokensSchema):
    tenant_id = ma.fields.UUID(metadata={"description": "The practice (tenant) id"})
    name = ma.fields.String(allow_none=True, metadata={
        "description": "The practice's name in the registry (null only for ledger rows of "
                       "a practice the registry no longer knows)"})
    status = ma.fields.String(allow_none=True, metadata={
        "description": "`active`, `suspended`, `closing` or `erased` (offboarded: still "
                       "billed for the usage it had)"})
    currency = ma.fields.String(metadata={
        "description": "`EUR`; `USD` for calls rated before prices were versioned"})


class BillingTotalsSchema(BillingTokensSchema):
    practices = ma.fields.Integer(metadata={
        "description": "Practices with usage in this currency"})


class BillingUsageSchema(ma.Schema):
    period = ma.fields.String(metadata={"description": "The month, YYYY-MM (UTC)"})
    closed = ma.fields.Boolean(metadata={
        "description": "Whether the month is closed (`flask usage close`): its figures "
                       "and files no longer change; later usage goes to the next open "
                       "month as corrections"})
    closed_at = ma.fields.DateTime(allow_none=True, metadata={
        "description": "When the month was closed (null while open)"})
    practices = ma.fields.List(ma.fields.Nested(BillingPracticeSchema), metadata={
        "description": "One entry per practice and currency with usage in the period, "
                       "ordered by `tenant_id`, then `currency`"})
    totals = ma.fields.Dict(keys=ma.fields.String(),
                            values=ma.fields.Nested(BillingTotalsSchema), metadata={
        "description": "The entries summed per currency (EUR and USD are never added "
                       "together)"})

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate


class TenantCreateSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=validate.Length(min=1, max=255))


class TenantSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    name = ma.fields.String(dump_only=True)
    status = ma.fields.String(dump_only=True)
    role = ma.fields.String(dump_only=True, metadata={"description": "The caller's role"})
    created_at = ma.fields.DateTime(dump_only=True)


class MembershipSchema(ma.Schema):
    tenant_id = ma.fields.UUID(dump_only=True)
    user_id = ma.fields.String(dump_only=True)
    role = ma.fields.String(dump_only=True)

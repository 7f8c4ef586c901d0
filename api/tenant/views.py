"""The caller's practice."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import select

from api.auth import actor, any_member
from api.blueprint import Blueprint
from api.db import session
from api.examples import TENANT
from api.onboarding.schemas import TenantSchema
from models import Tenant

blp = Blueprint("tenant", __name__, url_prefix="/api/v1/tenant",
                description="The practice the caller belongs to.")


@blp.route("")
class CurrentTenant(MethodView):
    @any_member
    @blp.response(200, TenantSchema, example=TENANT)
    def get(self) -> dict[str, Any]:
        """Show the caller's practice.

        The practice named by the token, with the caller's current role in it. A quick
        way to check that a token works.
        """
        p = actor()
        tenant = session().scalars(select(Tenant).where(Tenant.id == p.tenant_id)).one()
        return {"id": tenant.id, "name": tenant.name, "status": tenant.status,
                "role": p.role, "created_at": tenant.created_at}

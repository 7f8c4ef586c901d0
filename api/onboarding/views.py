"""Onboarding: create a practice, accept an invitation. Any authenticated user."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from sqlalchemy import text

from api.auth import authenticated, caller_emails, caller_id
from api.blueprint import Blueprint
from api.db import get_db
from api.errors import abort
from api.examples import MEMBERSHIP, TENANT, TENANT_CREATE
from api.onboarding.schemas import MembershipSchema, TenantCreateSchema, TenantSchema
from models.membership import ADMIN
from tenancy.provisioning import create_tenant, hash_invitation_code

blp = Blueprint("onboarding", __name__, url_prefix="/api/v1/onboarding",
                description="Sign a practice up, or join one with an invitation code.")


@blp.route("/tenants")
class Tenants(MethodView):
    @authenticated
    @blp.arguments(TenantCreateSchema, example=TENANT_CREATE)
    @blp.response(201, TenantSchema, example=TENANT)
    @blp.errors("already_member")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a practice and make the caller its admin.

        Any signed-in user who belongs to no practice yet (409 `already_member`
        otherwise). Creates the practice's own database schema. The caller's current
        token names no practice: get a new one, which carries the practice id and the
        `admin` role, before calling the practice's routes.
        """
        record = create_tenant(
            get_db().owner_engine, name=data["name"], admin_user_id=caller_id(),
            app_role=current_app.config["DATABASE_APP_ROLE"],
        )
        current_app.logger.info("tenant created", extra={"tenant_id": str(record.id)})
        return {"id": record.id, "name": record.name, "status": record.status, "role": ADMIN}


_OUTCOMES = {
    "invalid": (404, "invitation_invalid", "No such invitation, or it was already used."),
    "expired": (410, "invitation_expired", "The invitation has expired."),
    "tenant_inactive": (403, "tenant_inactive", "The practice is not active."),
    "already_member": (409, "already_member", "You already belong to a practice."),
    "wrong_account": (403, "invitation_wrong_account",
                      "The invitation was issued to another e-mail address; sign in with "
                      "the invited address."),
}


@blp.route("/invitations/<string:code>/accept")
class InvitationAcceptance(MethodView):
    @authenticated
    @blp.response(201, MembershipSchema, example=MEMBERSHIP)
    @blp.errors("invitation_invalid", "invitation_expired", "invitation_wrong_account",
                "tenant_inactive", "already_member")
    def post(self, code: str) -> dict[str, Any]:
        """Join the practice that issued the invitation code (single use).

        A signed-in user who belongs to no practice yet and whose token carries the
        invited e-mail address (the `emails` or `email` claim, compared
        case-insensitively; 403 `invitation_wrong_account` otherwise, and the invitation
        stays open). The caller becomes a member with the invitation's role; get a new
        token afterwards, since the current one names no practice. No body.
        """
        if len(code) > 128:
            abort(404, *_OUTCOMES["invalid"][1:])
        user_id = caller_id()
        with get_db().engine.begin() as conn:
            row = conn.execute(
                text("SELECT * FROM public.accept_invitation(:h, :u, :emails)"),
                {"h": hash_invitation_code(code), "u": user_id, "emails": caller_emails()},
            ).one()
        if row.outcome != "accepted":
            status, error, message = _OUTCOMES[row.outcome]
            abort(status, error, message)
        return {"tenant_id": row.tenant_id, "user_id": user_id, "role": row.member_role}

"""Practice administration (admins only)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app
from flask.views import MethodView

from api.admin import operations
from api.admin.schemas import (
    AuditEventSchema,
    AuditQueryArgsSchema,
    InvitationCreateSchema,
    InvitationSchema,
    MemberPatchSchema,
    MemberSchema,
    UsageQueryArgsSchema,
    UsageSchema,
)
from api.auth import principal, tenant_member
from api.blueprint import Blueprint
from api.db import session
from api.llm import gateway
from api.pagination import fetch_page

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin",
                description="Invitations, members and the audit trail of the practice.")


@blp.route("/invitations")
class Invitations(MethodView):
    @tenant_member("admin")
    @blp.arguments(InvitationCreateSchema, example={"email": "kollegin@example.org",
                                                    "role": "therapist"})
    @blp.response(201, InvitationSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Invite someone into the practice; the code is shown only once."""
        ttl = dt.timedelta(hours=current_app.config["INVITATION_TTL_HOURS"])
        invitation, code = operations.create_invitation(
            session(), principal(), email=data["email"], role=data["role"], ttl=ttl
        )
        return {"id": invitation.id, "code": code, "email": invitation.email,
                "role": invitation.role, "expires_at": invitation.expires_at,
                "created_at": invitation.created_at}


@blp.route("/members")
class Members(MethodView):
    @tenant_member("admin")
    @blp.response(200, MemberSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters: Any) -> list[Any]:
        """List the practice's members."""
        items, total = fetch_page(
            session(), operations.members_query(),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return items


@blp.route("/members/<string:user_id>")
class MembersById(MethodView):
    @tenant_member("admin")
    @blp.arguments(MemberPatchSchema, example={"role": "admin"})
    @blp.response(200, MemberSchema)
    @blp.alt_response(409, description="The practice would be left without an admin")
    def patch(self, data: dict[str, Any], user_id: str) -> Any:
        """Change a member's role."""
        db = session()
        member = operations.get_member(db, principal(), user_id)
        return operations.change_role(db, member, data["role"])

    @tenant_member("admin")
    @blp.response(204)
    @blp.alt_response(409, description="The practice would be left without an admin")
    def delete(self, user_id: str) -> None:
        """Remove a member; their tokens stop working at once."""
        db = session()
        operations.remove_member(db, operations.get_member(db, principal(), user_id))


@blp.route("/audit-events")
class AuditEvents(MethodView):
    @tenant_member("admin")
    @blp.arguments(AuditQueryArgsSchema(), location="query")
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """List audit events, newest first."""
        items, total = fetch_page(
            session(), operations.audit_query(args),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return items


@blp.route("/usage")
class Usage(MethodView):
    @tenant_member("admin")
    @blp.arguments(UsageQueryArgsSchema(), location="query")
    @blp.response(200, UsageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Show the practice's LLM token usage for a month, with its budget."""
        period = args.get("period") or dt.datetime.now(dt.UTC).strftime("%Y-%m")
        report = operations.usage_report(session(), period)
        p = principal()
        assert p.tenant_id is not None
        report["budget"] = gateway().ledger.budget(p.tenant_id)
        return report

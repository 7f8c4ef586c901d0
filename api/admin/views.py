"""Practice administration (admins only)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from flask import Response, current_app
from flask.views import MethodView
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from api.admin import operations
from api.admin.schemas import (
    ArtifactUsageSchema,
    AuditEventSchema,
    AuditQueryArgsSchema,
    InvitationCreateSchema,
    InvitationSchema,
    MemberPatchSchema,
    MemberSchema,
    OffboardingResultSchema,
    OffboardingSchema,
    PendingInvitationSchema,
    SecurityEventSchema,
    SecurityQueryArgsSchema,
    SettingsPatchSchema,
    SettingsSchema,
    UsageExportArgsSchema,
    UsageQueryArgsSchema,
    UsageSchema,
)
from api.audit import audit
from api.auth import actor, admin_only
from api.billing.periods import practice_file
from api.blueprint import Blueprint
from api.db import end_request_session, get_db, session
from api.errors import abort
from api.examples import (
    AUDIT_EVENTS,
    INVITATION,
    INVITATION_CREATE,
    MEMBER,
    MEMBER_PATCH,
    MEMBERS,
    OFFBOARDED,
    OFFBOARDING,
    PENDING_INVITATIONS,
    SECURITY_EVENTS,
    SETTINGS,
    SETTINGS_PATCH,
    USAGE,
    USAGE_ARTIFACTS,
    USAGE_EXPORT_CSV,
    USAGE_EXPORT_JSON,
)
from api.llm import gateway
from api.pagination import fetch_page
from api.storage import storage
from models import Tenant
from storage.base import StorageError
from tenancy.offboarding import erase_tenant

log = logging.getLogger(__name__)

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin",
                description="Invitations, members, settings and the audit trail of the practice.")


@blp.route("/invitations")
class Invitations(MethodView):
    @admin_only
    @blp.response(200, PendingInvitationSchema(many=True), example=PENDING_INVITATIONS)
    @blp.paginate()
    def get(self, pagination_parameters: Any) -> list[Any]:
        """List the practice's open invitations (not accepted, not expired).

        Each one's id, invited e-mail address, role and expiry; never the code (only its
        hash is stored). Newest first.
        """
        items, total = fetch_page(
            session(), operations.pending_invitations_query(),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return items

    @admin_only
    @blp.arguments(InvitationCreateSchema, example=INVITATION_CREATE)
    @blp.response(201, InvitationSchema, example=INVITATION)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Invite someone into the practice; the code is shown only once.

        Give the `code` to the invitee; they accept it with
        `POST /onboarding/invitations/{code}/accept` and then need a new token, which
        carries the practice and role. Only the code's hash is stored. It expires after
        `INVITATION_TTL_HOURS` (default 7 days) and works once. No e-mail is sent.
        """
        ttl = dt.timedelta(hours=current_app.config["INVITATION_TTL_HOURS"])
        invitation, code = operations.create_invitation(
            session(), actor(), email=data["email"], role=data["role"], ttl=ttl
        )
        return {"id": invitation.id, "code": code, "email": invitation.email,
                "role": invitation.role, "expires_at": invitation.expires_at,
                "created_at": invitation.created_at}


@blp.route("/invitations/<uuid:invitation_id>")
class InvitationById(MethodView):
    @admin_only
    @blp.response(204)
    @blp.errors("not_found")
    def delete(self, invitation_id: uuid.UUID) -> None:
        """Revoke an open invitation: its code stops working at once.

        404 `not_found` for an unknown, accepted or expired invitation (or another
        practice's).
        """
        operations.revoke_invitation(session(), invitation_id)


@blp.route("/members")
class Members(MethodView):
    @admin_only
    @blp.response(200, MemberSchema(many=True), example=MEMBERS)
    @blp.paginate()
    def get(self, pagination_parameters: Any) -> list[Any]:
        """List the practice's members.

        Each member's user id (the token subject) and role.
        """
        items, total = fetch_page(
            session(), operations.members_query(),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return items


@blp.route("/members/<string:user_id>")
class MembersById(MethodView):
    @admin_only
    @blp.arguments(MemberPatchSchema, example=MEMBER_PATCH)
    @blp.response(200, MemberSchema, example=MEMBER)
    @blp.errors("not_found", "last_admin")
    def patch(self, data: dict[str, Any], user_id: str) -> Any:
        """Change a member's role.

        Takes effect on the member's next request (the database's membership is
        authoritative, not the token's role claim). 409 `last_admin` when the practice
        would be left without an admin.
        """
        db = session()
        member = operations.get_member(db, actor(), user_id)
        return operations.change_role(db, member, data["role"])

    @admin_only
    @blp.response(204)
    @blp.errors("not_found", "last_admin")
    def delete(self, user_id: str) -> None:
        """Remove a member; their tokens stop working at once.

        Their next request is a 403 `not_a_member`. Records they wrote stay with the
        practice. 409 `last_admin` for the practice's only admin.
        """
        db = session()
        operations.remove_member(db, operations.get_member(db, actor(), user_id))


@blp.route("/audit-events")
class AuditEvents(MethodView):
    @admin_only
    @blp.arguments(AuditQueryArgsSchema(), location="query")
    @blp.response(200, AuditEventSchema(many=True), example=AUDIT_EVENTS)
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """List audit events, newest first.

        Every read and write of a clinical record: who (user id and role), what (action,
        record type and ids), when, and the request id. Never clinical text. Filter by
        `resource_id`, `actor_id` or `action`.
        """
        items, total = fetch_page(
            session(), operations.audit_query(args),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return items


@blp.route("/security-events")
class SecurityEvents(MethodView):
    @admin_only
    @blp.arguments(SecurityQueryArgsSchema(), location="query")
    @blp.response(200, SecurityEventSchema(many=True), example=SECURITY_EVENTS)
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """List refused attempts on records, newest first.

        Each request of a member on a clinical or admin route that was refused: 404 (a
        record they may not see, or none in this practice, such as another practice's
        id), 403, 409 or 412. Who (user id and role), the route's template, the record
        ids its path named, the status and error code, the request ids. Never a body or
        clinical text. Filter by `actor_id` or `resource_id`.
        """
        items, total = fetch_page(
            session(), operations.security_query(args),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
        )
        pagination_parameters.item_count = total
        return items


@blp.route("/usage")
class Usage(MethodView):
    @admin_only
    @blp.arguments(UsageQueryArgsSchema(), location="query")
    @blp.response(200, UsageSchema, example=USAGE)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Show the practice's LLM token usage for a month, with its budget.

        Totals and breakdowns by feature, model and day (UTC, the day a call started),
        from the metering ledger: the calls the month's invoice bills (those that started
        in it, and late settlements of an already closed month, under their own day).
        `cost` is in EUR: each call is rated with the price version valid when it started
        (the platform's price table, `LLM_PRICES_FILE`) and keeps that rating when prices
        change later; an exact decimal sent as a string so that no float rounding creeps
        in. Calls metered before prices were versioned were rated in USD: their cost is
        in `legacy_cost_usd`, never added to `cost`. `estimated_tokens` is the part of
        the tokens counted locally because the provider reported no usage.
        """
        period = args["period"]
        report = operations.usage_report(session(), period)
        p = actor()
        assert p.tenant_id is not None
        # In the request's own transaction: never a second pooled connection while it
        # holds one (docs/decisions/pooler.md).
        report["budget"] = gateway().ledger.budget(p.tenant_id, session().connection())
        return report


@blp.route("/usage/artifacts")
class UsageByArtifact(MethodView):
    @admin_only
    @blp.arguments(UsageQueryArgsSchema(), location="query")
    @blp.response(200, ArtifactUsageSchema(many=True), example=USAGE_ARTIFACTS)
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """List the month's AI cost per therapy session and per conversation.

        One row per artifact and feature: the therapy session whose note drafts were
        written (`session`, `note_draft`) or the case chat conversation (`conversation`,
        `case_chat`), with its calls, provider-reported tokens, locally estimated tokens
        (kept apart) and cost in EUR. Most expensive first. Ids only, never client data.
        Calls metered before artifacts were recorded are not listed (they are in
        `GET /admin/usage`). Admins only.
        """
        period = args["period"]
        p = actor()
        assert p.tenant_id is not None
        items, total = operations.artifact_usage(
            session(), p.tenant_id, period, offset=pagination_parameters.first_item,
            limit=pagination_parameters.page_size)
        pagination_parameters.item_count = total
        return items


@blp.route("/usage-exports")
class UsageExport(MethodView):
    @admin_only
    @blp.arguments(UsageExportArgsSchema(), location="query")
    @blp.doc(responses={"200": {
        "description": "The line items, as an attachment: CSV (`format=csv`) or JSON "
                       "(`format=json`).",
        "headers": {
            "X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"},
            "X-Billing-Period": {"description": "`open` or `closed`",
                                 "schema": {"type": "string", "enum": ["open", "closed"]}}},
        "content": {
            "text/csv": {"schema": {"type": "string"}, "example": USAGE_EXPORT_CSV},
            "application/json": {"schema": {"type": "object"},
                                 "example": USAGE_EXPORT_JSON}}}})
    @blp.errors("storage_unavailable")
    def get(self, args: dict[str, Any]) -> Response:
        """Download the practice's billing line items for a month (CSV or JSON).

        The file the platform invoices from (`flask usage export`): one line per day
        (UTC, the day the call started) x feature x deployment x price version, with
        `date, tenant_id, feature, deployment, requests, prompt_tokens, cached_tokens,
        completion_tokens, estimated_tokens, cost, currency, price_version,
        charge_class`. Provider-reported tokens and locally `estimated_tokens` are never
        mixed; `cost` is exact (8 places). `charge_class` is `correction` for calls that
        started in an earlier month that was already closed when they were metered (the
        date is their original day); empty otherwise (`null` in JSON).

        `period` defaults to the current month (UTC). Header `X-Billing-Period` says
        `open` (the file grows as calls are metered) or `closed`: then these are the
        exact bytes of the stored file, which never changes. A month without usage gives
        the header row only (`line_items: []`). Admins only.
        """
        period = args["period"]
        fmt = args["format"]
        p = actor()
        assert p.tenant_id is not None
        data, state = practice_file(session().connection(), storage(), p.tenant_id, period,
                                    fmt)
        mimetype = "text/csv" if fmt == "csv" else "application/json"
        return Response(data, mimetype=mimetype, headers={
            "Content-Disposition": f'attachment; filename="clinai-usage-{period}.{fmt}"',
            "X-Billing-Period": "closed" if state.closed else "open",
            "Cache-Control": "no-store"})


@blp.route("/tenant")
class PracticeOffboarding(MethodView):
    @admin_only
    @blp.arguments(OffboardingSchema, example=OFFBOARDING)
    @blp.response(200, OffboardingResultSchema, example=OFFBOARDED)
    @blp.errors("offboarding_incomplete")
    def delete(self, data: dict[str, Any]) -> dict[str, Any]:
        """Leave the platform: erase the whole practice.

        Send `{"confirm": "<the practice's name, exactly>"}` (422 otherwise, and nothing
        changes). Take a practice export first (`POST /admin/tenant/exports`): the
        practice stays responsible for keeping its treatment records (§ 630f(3) BGB) and
        must take them elsewhere.

        The practice is closed at once: every token of every member is refused from the
        next request on (403 `tenant_inactive`). Then its files (exports) and container,
        its database schema (every client, session, note, conversation, the audit
        trail), its memberships and invitations are deleted. The platform keeps the
        practice's registry entry (id, name, status `erased`) and its token usage ledger
        (billing). If it cannot finish (storage down, records still in use), the answer
        is 503 `offboarding_incomplete`: the practice stays closed, and the platform's
        scheduled `flask gdpr purge` (or the operator's `flask tenancy erase`) finishes
        the job. Admins only.
        """
        db, a = session(), actor()
        name = db.scalar(select(Tenant.name).where(Tenant.id == a.tenant_id))
        if data["confirm"] != name:
            abort(422, "validation_failed", "Type the practice's name in `confirm`.",
                  errors={"json": {"confirm": ["Must be the practice's name, exactly."]}})
        end_request_session()
        log.info("offboarding requested by %s", a.user_id)
        try:
            erase_tenant(get_db().owner_engine, storage(), a.tenant_id)
        except (StorageError, OperationalError) as exc:
            log.error("offboarding of %s stopped half way (%s)", a.tenant_id,
                      type(exc).__name__)
            abort(503, "offboarding_incomplete",
                  "The practice is closed; erasing its data did not finish and will be "
                  "completed by the platform.")
        return {"id": a.tenant_id, "status": "erased"}


@blp.route("/settings")
class Settings(MethodView):
    @admin_only
    @blp.response(200, SettingsSchema, example=SETTINGS)
    def get(self) -> dict[str, Any]:
        """Show the practice's settings in force.

        `ai_consent_required`: whether note drafts and case chat need the client's
        current consent to AI assistance (on by default for a new practice; practices
        that existed before the setting start with it off). `record_retention_years`:
        how long records are kept after treatment ended, never less than
        `minimum_record_retention_years`, the platform's legal minimum.
        """
        return operations.settings(session(), current_app.config["RECORD_RETENTION_YEARS"])

    @admin_only
    @blp.arguments(SettingsPatchSchema, example=SETTINGS_PATCH)
    @blp.response(200, SettingsSchema, example=SETTINGS)
    def patch(self, data: dict[str, Any]) -> dict[str, Any]:
        """Change the practice's settings.

        Only the fields sent change; an empty body is a 422. `record_retention_years`
        must be between `minimum_record_retention_years` and 100 (422
        `validation_failed` naming the field). Turning `ai_consent_required` on makes the
        AI routes answer 409 `consent_required` at once for every client without a
        current consent. Returns the settings in force. Audited (`settings.update`, with
        the practice's id).
        """
        db, a = session(), actor()
        operations.update_settings(db, data)
        audit(db, a, "settings.update", "practice_settings", [a.tenant_id])
        return operations.settings(db, current_app.config["RECORD_RETENTION_YEARS"])

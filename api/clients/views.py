"""Client records."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask.views import MethodView

from api.audit import audit
from api.auth import actor, admin_only, any_member
from api.blueprint import Blueprint
from api.clients import operations
from api.clients.erasure import ErasureRequest, erase_client
from api.clients.schemas import (
    ClientPatchSchema,
    ClientQueryArgsSchema,
    ClientSchema,
    ErasureSchema,
    RestrictionSchema,
    TombstoneSchema,
)
from api.common import check_if_match, require_if_match, retention_years, with_etag
from api.db import session
from api.examples import (
    CLIENT,
    CLIENT_CREATE,
    CLIENT_PATCH,
    ERASURE,
    RESTRICTED_CLIENT,
    RESTRICTION,
    TOMBSTONE,
)
from api.pagination import ReadAudit
from api.storage import storage

blp = Blueprint("clients", __name__, url_prefix="/api/v1/clients",
                description="Clients of the practice. Therapists see only their own.")



@blp.route("")
class Clients(MethodView):
    @any_member
    @blp.arguments(ClientQueryArgsSchema(), location="query")
    @blp.response(200, ClientSchema(many=True), example=[CLIENT])
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """List clients, by last name.

        Admins see every client of the practice, therapists only the clients assigned to
        them. Restricted clients (GDPR Art. 18) are left out; admins may ask for them with
        `include_restricted=true` (a therapist asking gets 403). Sorted by last name, then
        id; totals in `X-Pagination`. The read is audited (`client.list`, with the ids on
        the page).
        """
        items, total = operations.list_clients(
            session(), actor(), status=args.get("status"),
            include_restricted=args["include_restricted"],
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
            audit=ReadAudit(actor(), "client.list", "client"),
        )
        pagination_parameters.item_count = total
        restricted = [c.id for c in items if c.restricted_at is not None]
        if restricted:  # an admin's read of restricted records, audited as such
            audit(session(), actor(), "client.restricted_access", "client", restricted)
        return items

    @any_member
    @blp.arguments(ClientSchema, example=CLIENT_CREATE)
    @blp.response(201, ClientSchema, example=CLIENT)
    @blp.etag_header
    def post(self, data: dict[str, Any]) -> Any:
        """Create a client.

        `assigned_therapist_id` must be the user id of a member of the practice (422
        otherwise); a therapist may only assign themselves (403 `role_forbidden`), and a
        client a therapist creates without one is assigned to them. Returns the client
        with its `ETag`.
        """
        client = operations.create_client(session(), actor(), data)
        audit(session(), actor(), "client.create", "client", [client.id])
        return with_etag(client)


@blp.route("/<uuid:client_id>")
class ClientsById(MethodView):
    @any_member
    @blp.response(200, ClientSchema, example=CLIENT)
    @blp.etag_header
    @blp.errors("not_found")
    def get(self, client_id: uuid.UUID) -> Any:
        """Show one client.

        404 when the client does not exist, belongs to another practice, or is not
        assigned to the calling therapist. The read is audited (`client.read`).
        """
        client = operations.get_client(session(), actor(), client_id)
        audit(session(), actor(), "client.read", "client", [client.id])
        return with_etag(client)

    @any_member
    @blp.arguments(ClientPatchSchema, example=CLIENT_PATCH)
    @blp.response(200, ClientSchema, example={**CLIENT, **CLIENT_PATCH, "version": 2})
    @blp.etag_header
    @blp.if_match
    @blp.errors("not_found", "client_restricted")
    def patch(self, data: dict[str, Any], client_id: uuid.UUID) -> Any:
        """Change a client (send the ETag in If-Match).

        Only the fields sent change. `treatment_ended_on` is set by admins (403 for a
        therapist); `status` `discharged` needs it (422 without). A restricted client
        cannot change (409 `client_restricted`), except its `treatment_ended_on` and
        `status`, so that its retention period can start. Send the `ETag` of your last
        read in `If-Match`: 428 without it, 412 when someone changed the client since. The
        same assignment rules as on create apply. Returns the client with its new `ETag`.
        """
        if_match = require_if_match()
        db, p = session(), actor()
        client = operations.get_client(db, p, client_id)
        check_if_match(client, if_match)
        client = operations.update_client(db, p, client, data)
        audit(session(), actor(), "client.update", "client", [client.id])
        return with_etag(client)

    @admin_only
    @blp.arguments(ErasureSchema, example=ERASURE)
    @blp.response(200, TombstoneSchema, example=TOMBSTONE)
    @blp.errors("not_found", "retention_period_running", "storage_unavailable")
    def delete(self, data: dict[str, Any], client_id: uuid.UUID) -> Any:
        """Erase a client and everything derived from them (GDPR Art. 17).

        Send `{"confirm": "<the client's id>"}`; without it (or with another id) 422 and
        nothing changes. While the client has clinical documentation (a session or a note)
        and its retention period runs (no `treatment_ended_on` yet, or `retain_until` not
        passed), the law requires keeping the record (§ 630f(3) BGB; Art. 17(3)(b) GDPR
        with § 35(3) BDSG): 409 `retention_period_running`, with `errors.retain_until`
        (null while treatment is ongoing), and nothing changes. **Restrict the client
        instead** (`POST /clients/{client_id}/restriction`); `flask gdpr purge` erases it
        when its retention ends. Only a documented reason overrides the period:
        `"override_retention"`: `created_in_error`, `legal_order` or `other_legal_basis`.

        Erasure removes, in one transaction, the client, their sessions and transcripts,
        notes with amendments, consents, AI conversations, and exports (the client's,
        and the practice's exports, which hold every client) with their files. What
        remains is a tombstone: when, by whom, why, how many records of each kind; never
        the client's id or personal data. Audit events that named the client's records
        name the tombstone instead. The token ledger keeps its rows (they name no
        client). 503 `storage_unavailable` when export files could not be deleted: then
        nothing was erased; retry. Admins only; audited (`client.erase`).
        """
        db, a = session(), actor()
        client = operations.get_client(db, a, client_id)
        request = ErasureRequest(
            confirm=data.get("confirm"), override_retention=data.get("override_retention"),
            today=dt.datetime.now(dt.UTC).date(), retention_years=retention_years())
        erasure = erase_client(db, a, client, request, storage())
        t = erasure.tombstone
        return {"id": t.id, "erased_at": t.erased_at, "erased_by": t.erased_by,
                "reason": t.reason, "record_counts": t.record_counts,
                "retain_until": t.retain_until, "events_repointed": erasure.events_repointed}


@blp.route("/<uuid:client_id>/restriction")
class ClientRestriction(MethodView):
    @admin_only
    @blp.arguments(RestrictionSchema, example=RESTRICTION)
    @blp.response(200, ClientSchema, example=RESTRICTED_CLIENT)
    @blp.etag_header
    @blp.errors("not_found", "client_restricted")
    def post(self, data: dict[str, Any], client_id: uuid.UUID) -> Any:
        """Restrict processing of a client's record (GDPR Art. 18).

        Use it when a client asks for erasure while the record must still be kept
        (§ 630f(3) BGB with Art. 17(3)(b) GDPR and § 35(3) BDSG), or while a dispute about
        the record is open. From then on therapists no longer see the client or anything
        of it (404), admins still do and every read is audited
        (`client.restricted_access`), nothing of the client can change and no AI is used
        (409 `client_restricted`), and client lists leave it out unless an admin asks
        with `include_restricted=true`. `flask gdpr purge` erases a restricted client once
        its `retain_until` has passed. 409 `client_restricted` when it is restricted
        already. Admins only; audited (`client.restrict`).
        """
        db, a = session(), actor()
        client = operations.restrict_client(db, a, operations.get_client(db, a, client_id),
                                            data["reason"])
        audit(db, a, "client.restrict", "client", [client.id])
        return with_etag(client)

    @admin_only
    @blp.response(200, ClientSchema, example=CLIENT)
    @blp.etag_header
    @blp.errors("not_found")
    def delete(self, client_id: uuid.UUID) -> Any:
        """Lift the restriction of a client's record.

        The client is visible to its therapist and can change again. 404 when the client
        is not restricted. Admins only; audited (`client.unrestrict`).
        """
        db, a = session(), actor()
        client = operations.lift_restriction(db, operations.get_client(db, a, client_id))
        audit(db, a, "client.unrestrict", "client", [client.id])
        return with_etag(client)

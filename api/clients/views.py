"""Client records."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from api.auth import actor, any_member
from api.blueprint import Blueprint
from api.clients import operations
from api.clients.schemas import ClientPatchSchema, ClientQueryArgsSchema, ClientSchema
from api.common import audit, check_if_match, require_if_match, with_etag
from api.db import session
from api.examples import CLIENT, CLIENT_CREATE, CLIENT_PATCH
from api.pagination import ReadAudit

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
        them. Sorted by last name, then id; totals in `X-Pagination`. The read is audited
        (`client.list`, with the ids on the page).
        """
        items, total = operations.list_clients(
            session(), actor(), status=args.get("status"),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
            audit=ReadAudit(actor(), "client.list", "client"),
        )
        pagination_parameters.item_count = total
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
    @blp.errors("not_found")
    def patch(self, data: dict[str, Any], client_id: uuid.UUID) -> Any:
        """Change a client (send the ETag in If-Match).

        Only the fields sent change. Send the `ETag` of your last read in `If-Match`: 428
        without it, 412 when someone changed the client since. The same assignment rules
        as on create apply. Returns the client with its new `ETag`.
        """
        if_match = require_if_match()
        db, p = session(), actor()
        client = operations.get_client(db, p, client_id)
        check_if_match(client, if_match)
        client = operations.update_client(db, p, client, data)
        audit(session(), actor(), "client.update", "client", [client.id])
        return with_etag(client)

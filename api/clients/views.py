"""Client records."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, make_response
from flask.views import MethodView

from api.auth import principal, tenant_member
from api.blueprint import Blueprint
from api.clients import operations
from api.clients.schemas import ClientPatchSchema, ClientQueryArgsSchema, ClientSchema
from api.common import audit, check_if_match, etag_of, read_audit, require_if_match, with_etag
from api.db import session

blp = Blueprint("clients", __name__, url_prefix="/api/v1/clients",
                description="Clients of the practice. Therapists see only their own.")

CLINICAL_ROLES = ("admin", "therapist")


@blp.route("")
class Clients(MethodView):
    @tenant_member(*CLINICAL_ROLES)
    @blp.arguments(ClientQueryArgsSchema(), location="query")
    @blp.response(200, ClientSchema(many=True))
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: Any) -> list[Any]:
        """List clients, by last name."""
        items, total = operations.list_clients(
            session(), principal(), status=args.get("status"),
            offset=pagination_parameters.first_item, limit=pagination_parameters.page_size,
            audit=read_audit("client.list", "client"),
        )
        pagination_parameters.item_count = total
        return items

    @tenant_member(*CLINICAL_ROLES)
    @blp.arguments(ClientSchema, example={
        "first_name": "Erika", "last_name": "Mustermann", "date_of_birth": "1985-04-12",
        "contact": {"email": "erika@example.org", "phone": "+49 30 1234567"},
        "assigned_therapist_id": "8f2c1f4e-therapist-object-id"})
    @blp.response(201, ClientSchema)
    def post(self, data: dict[str, Any]) -> Response:
        """Create a client."""
        client = operations.create_client(session(), principal(), data)
        audit("client.create", "client", [client.id])
        response = make_response(ClientSchema().dump(client), 201)
        return with_etag(response, client.version, client.id)


@blp.route("/<uuid:client_id>")
class ClientsById(MethodView):
    @tenant_member(*CLINICAL_ROLES)
    @blp.response(200, ClientSchema)
    def get(self, client_id: uuid.UUID) -> Response:
        """Show one client."""
        client = operations.get_client(session(), principal(), client_id)
        audit("client.read", "client", [client.id])
        return with_etag(make_response(ClientSchema().dump(client)), client.version, client.id)

    @tenant_member(*CLINICAL_ROLES)
    @blp.arguments(ClientPatchSchema, example={"status": "inactive"})
    @blp.response(200, ClientSchema)
    @blp.doc(parameters=[{"in": "header", "name": "If-Match", "required": True,
                          "schema": {"type": "string"}}])
    def patch(self, data: dict[str, Any], client_id: uuid.UUID) -> Response:
        """Change a client (send the ETag in If-Match)."""
        if_match = require_if_match()
        db, p = session(), principal()
        client = operations.get_client(db, p, client_id)
        check_if_match(etag_of(client.version, client.id), if_match)
        client = operations.update_client(db, p, client, data)
        audit("client.update", "client", [client.id])
        return with_etag(make_response(ClientSchema().dump(client)), client.version, client.id)

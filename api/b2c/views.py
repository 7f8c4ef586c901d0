"""The Azure AD B2C API connector that puts tenant and role claims into tokens."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import marshmallow as ma
from flask import Response, current_app, jsonify, request
from flask.views import MethodView
from sqlalchemy import text

from api.apidoc import CONNECTOR_ERRORS, document_errors
from api.blueprint import Blueprint
from api.db import get_db
from api.errors import abort, error_response
from api.examples import CONNECTOR_REQUEST, CONNECTOR_RESPONSE
from api.secrets import current_secrets

P = ParamSpec("P")
R = TypeVar("R")

blp = Blueprint("b2c", __name__, url_prefix="/api/v1/b2c",
                description="Called by Azure AD B2C at sign-in (HTTP Basic auth).")


class ConnectorRequestSchema(ma.Schema):
    """B2C sends many attributes; only objectId is used, the rest is ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    objectId = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))


class ConnectorResponseSchema(ma.Schema):
    """The API connector's continuation response, with the claims when the user has them."""

    version = ma.fields.String(metadata={"example": "1.0.0"})
    action = ma.fields.String(metadata={"description": "Always `Continue`"})
    extension_tenant_id = ma.fields.UUID(metadata={
        "description": "The user's practice; absent for a user without one. The key is "
                       "`AUTH_TENANT_CLAIM` (default shown)."})
    extension_role = ma.fields.String(metadata={
        "description": "`admin` or `therapist`; absent with the practice. The key is "
                       "`AUTH_ROLE_CLAIM` (default shown)."})


def _authorised() -> bool:
    secrets = current_secrets(current_app)
    user = current_app.config["B2C_CONNECTOR_USERNAME"]
    password = secrets.get("B2C_CONNECTOR_PASSWORD",
                           current_app.config["B2C_CONNECTOR_PASSWORD"])
    if not user or not password:
        abort(503, "connector_not_configured", "The B2C API connector is not configured "
              "(B2C_CONNECTOR_USERNAME and B2C_CONNECTOR_PASSWORD).")
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    given_user = (auth.username or "").encode()
    given_password = (auth.password or "").encode()
    # Compare both, always, in constant time.
    ok_user = hmac.compare_digest(given_user, user.encode())
    ok_password = hmac.compare_digest(given_password, password.encode())
    if ok_user and not ok_password and secrets.refresh("B2C_CONNECTOR_PASSWORD", password):
        # Rotated in Key Vault since we last read it (re-read at most every 30 s).
        current = secrets.get("B2C_CONNECTOR_PASSWORD") or ""
        ok_password = hmac.compare_digest(given_password, current.encode())
    return ok_user and ok_password


def connector_auth(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Check HTTP Basic credentials before anything else is read."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if not _authorised():
            response = error_response(401, "unauthorized", "Bad connector credentials.")
            response.headers["WWW-Authenticate"] = 'Basic realm="b2c-connector"'
            return response
        return view(*args, **kwargs)

    return document_errors(wrapper, *CONNECTOR_ERRORS)


@blp.route("/claims")
class Claims(MethodView):
    @connector_auth
    @blp.arguments(ConnectorRequestSchema, example=CONNECTOR_REQUEST)
    @blp.response(200, ConnectorResponseSchema, example=CONNECTOR_RESPONSE)
    @blp.doc(security=[{"b2cBasic": []}])
    def post(self, data: dict[str, Any]) -> Response:
        """Return the tenant and role claims of the signing-in user.

        Called by Azure AD B2C (or Entra External ID) at sign-in, with HTTP Basic
        credentials (`B2C_CONNECTOR_USERNAME` / `B2C_CONNECTOR_PASSWORD`; 503 when unset).
        Only `objectId` is read. A user without a practice gets `Continue` without claims.
        """
        with get_db().engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM public.claims_for_user(:u)"),
                               {"u": data["objectId"]}).first()
        body: dict[str, Any] = {"version": "1.0.0", "action": "Continue"}
        if row is not None:
            body[current_app.config["AUTH_TENANT_CLAIM"]] = str(row.tenant_id)
            body[current_app.config["AUTH_ROLE_CLAIM"]] = row.member_role
        return jsonify(body)

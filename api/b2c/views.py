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

from api.blueprint import Blueprint
from api.db import get_db
from api.errors import abort, error_response

P = ParamSpec("P")
R = TypeVar("R")

blp = Blueprint("b2c", __name__, url_prefix="/api/v1/b2c",
                description="Called by Azure AD B2C at sign-in (HTTP Basic auth).")


class ConnectorRequestSchema(ma.Schema):
    """B2C sends many attributes; only objectId is used, the rest is ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    objectId = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))


def _authorised() -> bool:
    user = current_app.config["B2C_CONNECTOR_USERNAME"]
    password = current_app.config["B2C_CONNECTOR_PASSWORD"]
    if not user or not password:
        abort(503, "connector_not_configured", "The B2C API connector is not configured.")
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    given_user = (auth.username or "").encode()
    given_password = (auth.password or "").encode()
    # Compare both, always, in constant time.
    ok_user = hmac.compare_digest(given_user, user.encode())
    ok_password = hmac.compare_digest(given_password, password.encode())
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

    return wrapper


@blp.route("/claims")
class Claims(MethodView):
    @connector_auth
    @blp.arguments(ConnectorRequestSchema, example={
        "objectId": "6b2d6d1e-0000-4000-8000-000000000001", "email": "t@example.org",
        "step": "PreTokenIssuance", "client_id": "00000000-0000-0000-0000-000000000000"})
    @blp.doc(security=[{"b2cBasic": []}])
    def post(self, data: dict[str, Any]) -> Response:
        """Return the tenant and role claims of the signing-in user."""
        with get_db().engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM public.claims_for_user(:u)"),
                               {"u": data["objectId"]}).first()
        body: dict[str, Any] = {"version": "1.0.0", "action": "Continue"}
        if row is not None:
            body[current_app.config["AUTH_TENANT_CLAIM"]] = str(row.tenant_id)
            body[current_app.config["AUTH_ROLE_CLAIM"]] = row.member_role
        return jsonify(body)

"""Token validation (Azure AD B2C / Entra External ID, or the development issuer).

flask-jwt-extended does the request-side work: RS256 only, audience, issuer,
``exp``/``nbf``. The signing key comes from the issuer's JWKS, found through its
OpenID metadata document and cached; an unknown ``kid`` triggers at most one refresh
per 30 seconds. Tenant and role claims are only hints: every request re-reads the
caller's membership and the tenant's status from the database in the same round
trip that sets the tenant context, so suspension and revocation take effect at once.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import jwt
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import JWTManager, get_jwt, get_jwt_header, verify_jwt_in_request

from api.apidoc import AUTHENTICATED_ERRORS, TENANT_MEMBER_ERRORS, document_errors
from api.errors import abort, error_response
from api.settings import DEV_AUDIENCE
from api.tokens import (
    ClaimsCache,
    DevIssuer,
    OidcKeySet,
)
from models.membership import ADMIN, ROLES
from tenancy.actor import Actor

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def init_app(app: Flask) -> None:
    c = app.config
    keys: OidcKeySet | DevIssuer
    if c["AUTH_OIDC_METADATA_URL"]:
        keys = OidcKeySet(c["AUTH_OIDC_METADATA_URL"])
        audience = c["AUTH_AUDIENCE"]
        issuer: Callable[[], str] = lambda: keys.issuer  # noqa: E731  (resolved lazily)
    else:
        dev = DevIssuer(Path(app.instance_path) / "dev-issuer-key.pem",
                        c["AUTH_AUDIENCE"] or DEV_AUDIENCE)
        keys, audience = dev, dev.audience
        issuer = lambda: dev.issuer  # noqa: E731
        app.extensions["clinai_dev_issuer"] = dev
    app.extensions["clinai_keys"] = keys
    app.extensions["clinai_claims_cache"] = ClaimsCache()
    c.update(
        JWT_TOKEN_LOCATION=["headers"],
        JWT_DECODE_ALGORITHMS=["RS256"],
        # flask-jwt-extended adds JWT_ALGORITHM to the accepted decode algorithms: pin it
        # too, or HS256 tokens would reach PyJWT.
        JWT_ALGORITHM="RS256",
        JWT_DECODE_AUDIENCE=audience,
        JWT_DECODE_LEEWAY=c["AUTH_CLOCK_SKEW_SECONDS"],
        JWT_IDENTITY_CLAIM="sub",
    )
    manager = JWTManager(app)

    @manager.decode_key_loader
    def _key(header: dict[str, Any], _claims: dict[str, Any]) -> Any:
        # The issuer comes from the metadata document, read lazily: set it before PyJWT
        # checks it, and only when it differs (the config is shared by every request).
        expected = issuer()
        if current_app.config.get("JWT_DECODE_ISSUER") != expected:
            current_app.config["JWT_DECODE_ISSUER"] = expected
        return keys.key_for(header.get("kid"))

    @manager.token_verification_loader
    def _verify(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        subject = claims["oid"] if "oid" in claims else claims.get("sub")
        return "exp" in claims and _usable_subject(subject)

    def _reject(message: str) -> Response:
        return error_response(401, "invalid_token", message)

    manager.invalid_token_loader(lambda reason: _reject("The access token is invalid."))
    manager.unauthorized_loader(
        lambda reason: error_response(401, "missing_token", "A bearer token is required.")
    )
    manager.expired_token_loader(
        lambda _h, _c: error_response(401, "token_expired", "The access token has expired.")
    )
    manager.token_verification_failed_loader(
        lambda _h, _c: _reject("The access token lacks required claims.")
    )


def _validated_claims() -> dict[str, Any]:
    """Return the request token's claims, verified now or within the token's lifetime."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    cache: ClaimsCache = current_app.extensions["clinai_claims_cache"]
    if token:
        cached = cache.get(token)
        if cached is not None:
            kid, claims = cached
            try:  # the signing key must still be one the issuer publishes
                current_app.extensions["clinai_keys"].key_for(kid)
                return claims
            except jwt.DecodeError:
                pass  # fall through: full verification rejects it
    verify_jwt_in_request()
    verified: dict[str, Any] = get_jwt()
    cache.put(token, str(get_jwt_header().get("kid")), verified)
    return verified


def _usable_subject(subject: object) -> bool:
    """A user id we can store and send to the database: 1-255 printable characters.

    Rules out NUL and other control characters and lone surrogates, which PostgreSQL
    (or the UTF-8 encoder) would refuse with an error instead of a 401.
    """
    return isinstance(subject, str) and 0 < len(subject) <= 255 and subject.isprintable()


def _subject(claims: dict[str, Any]) -> str:
    """The caller's id: ``oid`` if present, else ``sub`` (checked by ``_verify``)."""
    subject = claims["oid"] if "oid" in claims else claims["sub"]
    assert isinstance(subject, str)
    return subject


def _emails(claims: dict[str, Any]) -> list[str]:
    """The token's e-mail addresses: B2C's ``emails`` (a list; verified at sign-up for
    local accounts) or Entra External ID's ``email``. Anything else is ignored."""
    raw = claims.get("emails", claims.get("email"))
    values = raw if isinstance(raw, list) else [raw]
    return [v for v in values if isinstance(v, str) and 0 < len(v) <= 255 and v.isprintable()]


def authenticated(view: Callable[P, R]) -> Callable[P, R]:
    """Require a valid token; the caller need not belong to a tenant yet (``caller_id()``)."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        claims = _validated_claims()
        g.caller_id = _subject(claims)
        g.caller_emails = _emails(claims)
        return view(*args, **kwargs)

    return document_errors(wrapper, *AUTHENTICATED_ERRORS)


def tenant_member(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid token, an active tenant, a current membership and one of ``roles``.

    Opens the request's session in the tenant and resolves the request's ``Actor``
    (``actor()``), which the view passes on to every operation.
    """
    from api.db import get_db, open_request_session

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            claims = _validated_claims()
            raw_tenant = claims.get(current_app.config["AUTH_TENANT_CLAIM"])
            if not raw_tenant:
                abort(403, "no_tenant", "The token names no practice; onboard or accept an "
                      "invitation first.")
            try:
                tenant_id = uuid.UUID(str(raw_tenant))
            except ValueError:
                abort(403, "tenant_unknown", "The token names an unknown practice.")
            get_db().verify()
            g.caller_id = _subject(claims)
            g.actor = open_request_session(tenant_id, g.caller_id,
                                           read_only=request.method in ("GET", "HEAD"))
            if g.actor.role not in roles:
                abort(403, "role_forbidden", "Your role may not use this endpoint.")
            return view(*args, **kwargs)

        return document_errors(wrapper, *TENANT_MEMBER_ERRORS)

    return decorator


def any_member(view: Callable[P, R]) -> Callable[P, R]:
    """Require a current member of the token's practice, in any role."""
    return tenant_member(*ROLES)(view)


def admin_only(view: Callable[P, R]) -> Callable[P, R]:
    """Require an admin of the token's practice."""
    return tenant_member(ADMIN)(view)


def actor() -> Actor:
    """The request's ``Actor`` (views under ``tenant_member``)."""
    a: Actor = g.actor
    return a


def caller_emails() -> list[str]:
    """The token's e-mail addresses (views under ``authenticated``)."""
    emails: list[str] = g.caller_emails
    return emails


def caller_id() -> str:
    """The token's subject (views under ``authenticated`` or ``tenant_member``)."""
    user_id: str = g.caller_id
    return user_id

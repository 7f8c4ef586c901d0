"""Token validation (Azure AD B2C / Entra External ID, or the development issuer).

flask-jwt-extended does the request-side work: RS256 only, audience, issuer,
``exp``/``nbf``. The signing key comes from the issuer's JWKS, found through its
OpenID metadata document and cached; an unknown ``kid`` triggers at most one refresh
per 30 seconds. Tenant and role claims are only hints: every request re-reads the
caller's membership and the tenant's status from the database in the same round
trip that sets the tenant context, so suspension and revocation take effect at once.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import JWTManager, get_jwt, get_jwt_header, verify_jwt_in_request
from jwt import PyJWK

from api.apidoc import AUTHENTICATED_ERRORS, TENANT_MEMBER_ERRORS, document_errors
from api.domain import Principal
from api.errors import abort, error_response
from api.settings import DEV_AUDIENCE
from models.membership import ADMIN, ROLES
from tenancy.context import ROLE_KEY, TenantContext

log = logging.getLogger(__name__)

DEV_ISSUER = "https://dev-issuer.clinai.invalid/"
DEV_KEY_ID = "clinai-dev-1"
KEY_REFRESH_INTERVAL = 30.0
# Keys are re-read at least this often, so a key the issuer withdraws stops being trusted.
KEY_MAX_AGE = 3600.0

P = ParamSpec("P")
R = TypeVar("R")


class IdentityProviderUnavailable(RuntimeError):
    """The issuer's metadata or keys could not be fetched."""


class OidcKeySet:
    """Keys of one OIDC issuer, from its metadata document. Thread-safe."""

    def __init__(self, metadata_url: str, *, timeout: float = 5.0) -> None:
        self.metadata_url = metadata_url
        self.timeout = timeout
        self._lock = threading.Lock()
        self._issuer: str | None = None
        self._jwks_uri: str | None = None
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            with self._lock:
                self._load_metadata()
        assert self._issuer is not None
        return self._issuer

    def _get(self, url: str) -> Any:
        try:
            response = httpx.get(url, timeout=self.timeout)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IdentityProviderUnavailable("identity provider unreachable") from exc

    def _load_metadata(self) -> None:
        if self._issuer is not None:
            return
        document = self._get(self.metadata_url)
        try:
            self._issuer, self._jwks_uri = document["issuer"], document["jwks_uri"]
        except (KeyError, TypeError) as exc:
            raise IdentityProviderUnavailable("metadata lacks issuer or jwks_uri") from exc

    def _refresh(self) -> None:
        self._load_metadata()
        assert self._jwks_uri is not None
        keys: dict[str, Any] = {}
        for jwk in self._get(self._jwks_uri).get("keys", []):
            try:
                key = PyJWK(jwk)
            except jwt.PyJWTError:
                continue  # a key type we can't use (e.g. an encryption key) is skipped
            # Only RSA signing keys: a symmetric ("oct") key must never verify a token.
            if jwk.get("kty") == "RSA" and jwk.get("use", "sig") == "sig" and jwk.get("kid"):
                keys[jwk["kid"]] = key.key
        self._keys = keys
        self._fetched_at = time.monotonic()

    def key_for(self, kid: str | None) -> Any:
        """Return the verification key for ``kid``.

        An unknown ``kid`` refreshes the key set at most once per 30 s; keys older than
        an hour are re-read (if the issuer is unreachable then, the known keys stay in
        use and the refresh is retried 30 s later).
        """
        if not isinstance(kid, str):
            raise jwt.DecodeError("token has no key id")
        age = time.monotonic() - self._fetched_at
        if age >= KEY_MAX_AGE and self._keys:
            with self._lock:
                if time.monotonic() - self._fetched_at >= KEY_MAX_AGE:
                    try:
                        self._refresh()
                    except IdentityProviderUnavailable:
                        log.warning("identity provider unreachable; keeping known keys")
                        self._fetched_at = time.monotonic() - KEY_MAX_AGE + KEY_REFRESH_INTERVAL
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() - self._fetched_at >= KEY_REFRESH_INTERVAL:
                self._refresh()
                key = self._keys.get(kid)
        if key is None:
            raise jwt.DecodeError("token signed with an unknown key")
        return key


class DevIssuer:
    """A local RSA issuer for APP_ENV=development; its key lives in the instance folder."""

    def __init__(self, key_path: Path, audience: str) -> None:
        self.key_path = key_path
        self.audience = audience
        self.issuer = DEV_ISSUER
        self._private = self._load_or_create()

    def _load_or_create(self) -> rsa.RSAPrivateKey:
        if not self.key_path.exists():
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            try:  # O_EXCL: two workers starting at once agree on one key
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
            except FileExistsError:
                time.sleep(0.2)
        loaded = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return loaded

    def key_for(self, kid: str | None) -> Any:
        if kid != DEV_KEY_ID:
            raise jwt.DecodeError("token signed with an unknown key")
        return self._private.public_key()

    def mint(self, *, subject: str, tenant_claim: str, role_claim: str,
             tenant: str | None = None, role: str | None = None,
             lifetime: dt.timedelta = dt.timedelta(hours=8)) -> str:
        now = dt.datetime.now(dt.UTC)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject,
                                  "iat": now, "nbf": now, "exp": now + lifetime}
        if tenant:
            claims[tenant_claim] = tenant
        if role:
            claims[role_claim] = role
        return jwt.encode(claims, self._private, algorithm="RS256", headers={"kid": DEV_KEY_ID})


class ClaimsCache:
    """Validated claims by token digest, kept until the token's ``exp``.

    Saves the RS256 verification on repeat requests with the same token. Only the
    signature/claims check is cached: tenant status and membership are still read from
    the database on every request.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str) -> tuple[str, dict[str, Any]] | None:
        """Return (kid, claims) of a token validated before and not expired yet."""
        entry = self._entries.get(self._key(token))
        if entry is None or entry[0] <= time.time():
            return None
        return entry[1], entry[2]

    def put(self, token: str, kid: str, claims: dict[str, Any]) -> None:
        expires = claims.get("exp")
        if not isinstance(expires, int | float):
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.time()
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                while len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[self._key(token)] = (float(expires), kid, claims)


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
        # The issuer comes from the metadata document: set it before PyJWT checks it.
        current_app.config["JWT_DECODE_ISSUER"] = issuer()
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

    @app.errorhandler(IdentityProviderUnavailable)
    def _idp_down(_exc: IdentityProviderUnavailable) -> Response:
        return error_response(503, "identity_provider_unavailable",
                              "The identity provider could not be reached.")


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


def authenticated(view: Callable[P, R]) -> Callable[P, R]:
    """Require a valid token; the caller need not belong to a tenant yet."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.principal = Principal(user_id=_subject(_validated_claims()), tenant_id=None, role=None)
        return view(*args, **kwargs)

    return document_errors(wrapper, *AUTHENTICATED_ERRORS)


def tenant_member(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid token, an active tenant, a current membership and one of ``roles``."""
    from api.db import get_db, open_tenant_session

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
            context = TenantContext(tenant_id=tenant_id, user_id=_subject(claims))
            session = open_tenant_session(context, read_only=request.method in ("GET", "HEAD"))
            session.connection()  # begins the transaction: context + membership check
            role = session.info[ROLE_KEY]
            g.principal = Principal(user_id=context.user_id, tenant_id=tenant_id, role=role)
            if role not in roles:
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


def principal() -> Principal:
    p: Principal = g.principal
    return p

"""Where token signing keys come from, and the cache of validated claims (no Flask here).

    OidcKeySet      keys of an OIDC issuer (B2C / Entra External ID), via its metadata
    DevIssuer       a local RSA issuer for APP_ENV=development (key in the instance folder)
    ClaimsCache     validated claims by token digest, until the token's exp

``api.auth`` wires them into flask-jwt-extended.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK

log = logging.getLogger(__name__)

DEV_ISSUER = "https://dev-issuer.clinai.invalid/"
DEV_KEY_ID = "clinai-dev-1"
KEY_REFRESH_INTERVAL = 30.0
# Keys are re-read at least this often, so a key the issuer withdraws stops being trusted.
KEY_MAX_AGE = 3600.0

class IdentityProviderUnavailable(RuntimeError):
    """The issuer's metadata or keys could not be fetched (``api.errors`` maps ``code``)."""

    code = "identity_provider_unavailable"
    # What the caller is told; the exception's own text (for logs) names the cause.
    message = "The identity provider could not be reached."


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
             email: str | None = None,
             lifetime: dt.timedelta = dt.timedelta(hours=8)) -> str:
        now = dt.datetime.now(dt.UTC)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject,
                                  "iat": now, "nbf": now, "exp": now + lifetime}
        if tenant:
            claims[tenant_claim] = tenant
        if role:
            claims[role_claim] = role
        if email:
            claims["emails"] = [email]  # as Azure AD B2C sends it
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

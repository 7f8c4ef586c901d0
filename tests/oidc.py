"""A local OpenID Connect issuer: metadata document, JWKS and token minting.

Serves on loopback HTTP so the app's real metadata/JWKS code path is exercised.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "api://clinai-test"


class LocalIssuer:
    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.jwks_requests = 0
        self.add_key("k1")
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.issuer, "jwks_uri": f"{issuer.base}/keys"}
                elif self.path == "/keys":
                    issuer.jwks_requests += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = f"{self.base}/tfp/test-tenant/v2.0/"
        self.metadata_url = f"{self.base}/.well-known/openid-configuration"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
            keys.append(jwk)
        return {"keys": keys}

    def claims(self, sub: str, *, tenant: Any = None, role: str | None = None,
               **overrides: Any) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": AUDIENCE, "sub": sub,
                                  "iat": now, "nbf": now, "exp": now + dt.timedelta(hours=1)}
        if tenant is not None:
            claims["extension_tenant_id"] = str(tenant)
        if role is not None:
            claims["extension_role"] = role
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, kid: str = "k1", key: Any = None,
             algorithm: str = "RS256", headers: dict[str, Any] | None = None) -> str:
        signing_key = key if key is not None else self.keys[kid]
        return jwt.encode(claims, signing_key, algorithm=algorithm,
                          headers={"kid": kid, **(headers or {})})

    def token(self, sub: str, *, tenant: Any = None, role: str | None = None,
              **overrides: Any) -> str:
        return self.sign(self.claims(sub, tenant=tenant, role=role, **overrides))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

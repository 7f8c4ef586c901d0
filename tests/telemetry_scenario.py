"""One scripted scenario with Application Insights on, run in a child process.

OpenTelemetry's providers can be set once per process, so the export tests run this
module as ``python -m tests.telemetry_scenario`` with the connection string of a local
ingestion stand-in (``tests.ingestion``) in the environment and the scenario's settings in
``CLINAI_SCENARIO`` (JSON: the test database and roles, and marker values). It drives the
real app through its API with the markers in every kind of personal and clinical field,
calls Azure OpenAI (the simulator over loopback HTTP, so httpx2 really sends), Key Vault
and Blob Storage (the Azure SDK over a recording transport: no emulator for Key Vault),
provokes an unhandled exception and a database error that both quote a marker, flushes,
and prints one JSON line: the tenant id, and every bearer token and key it used.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

from azure.core.pipeline.transport import HttpResponse, HttpTransport
from sqlalchemy import text

from api import create_app
from api.db import get_db
from api.telemetry import OUTBOUND_OFF, Pipeline
from llm.simulator import Simulator, serve
from tests.conftest import app_config
from tests.oidc import LocalIssuer

VAULT_URL = "https://clinai-scenario.vault.azure.net"
ACCOUNT_URL = "https://clinaiscenario.blob.core.windows.net"
# Azurite's documented development key (public, not a secret).
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")


class _Response(HttpResponse):
    def __init__(self, request: Any, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(request, None)
        self.status_code = status
        self.headers = headers
        self.reason = "OK" if status < 400 else "Unauthorized"
        self.content_type = headers.get("Content-Type")
        self._body = body

    def body(self) -> bytes:
        return self._body

    # What generated clients of azure.core.rest's response read.
    @property
    def content(self) -> bytes:
        return self._body

    def read(self) -> bytes:
        return self._body

    def json(self) -> Any:
        return json.loads(self._body)


class AzureTransport(HttpTransport):  # type: ignore[type-arg]
    """Answers Key Vault and Blob Storage as Azure would, from memory (no network)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.sent: list[str] = []

    def __enter__(self) -> AzureTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> _Response:
        self.sent.append(f"{request.method} {request.url}")
        headers = {"x-ms-request-id": str(uuid.uuid4()), "Content-Type": "application/json"}
        if "vault.azure.net" in request.url:
            if "Authorization" not in request.headers:  # Key Vault's challenge first
                headers["WWW-Authenticate"] = ('Bearer authorization="https://login.'
                                               'microsoftonline.com/scenario-tenant", '
                                               'resource="https://vault.azure.net"')
                return _Response(request, 401, headers, b"{}")
            body = json.dumps({"value": self.secret,
                               "id": f"{VAULT_URL}/secrets/database-app-password/1"})
            return _Response(request, 200, headers, body.encode())
        headers.update({"ETag": '"0x1"', "Last-Modified": "Tue, 01 Dec 2026 00:00:00 GMT",
                        "Content-MD5": "", "x-ms-request-server-encrypted": "true"})
        return _Response(request, 201, headers, b"")


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("scenario-access-token", 4_102_444_800)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("scenario-access-token", 4_102_444_800)


def main() -> None:
    spec = json.loads(os.environ["CLINAI_SCENARIO"])
    m: dict[str, str] = spec["markers"]
    issuer = LocalIssuer()
    simulator = Simulator()
    llm_server = serve(simulator)
    config = app_config(
        spec["database_url"], issuer,
        DATABASE_OWNER_ROLE=spec["owner_role"], DATABASE_APP_ROLE=spec["app_role"],
        DATABASE_APP_PASSWORD=spec["app_password"], STORAGE_LOCAL_ROOT=spec["storage_root"],
        AZURE_OPENAI_ENDPOINT=f"http://127.0.0.1:{llm_server.server_address[1]}",
        AZURE_OPENAI_API_KEY=spec["llm_key"], PROPAGATE_EXCEPTIONS=False, LOG_LEVEL="INFO")
    app = create_app(config)

    def boom() -> None:  # an unhandled exception quoting a marker
        raise RuntimeError(f"could not file {m['last']} <{m['email']}>")

    def db_error() -> Any:  # a database error quoting a marker; a literal inlined in SQL
        with get_db().engine.connect() as conn:
            conn.execute(text(f"SELECT length('{m['literal']}')"))  # inlined on purpose
            conn.execute(text("SELECT CAST(:v AS integer)"), {"v": m["parameter"]})
        return "unreachable"

    app.add_url_rule("/scenario/boom", view_func=boom)
    app.add_url_rule("/scenario/db-error", view_func=db_error)

    client = app.test_client()
    tokens: list[str] = []

    def bearer(token: str) -> dict[str, str]:
        tokens.append(token)
        return {"Authorization": f"Bearer {token}"}

    def ok(response: Any, status: int) -> Any:
        assert response.status_code == status, (response.status_code, response.get_data())
        return response.json

    sub = f"scenario-{uuid.uuid4()}"
    tenant = ok(client.post("/api/v1/onboarding/tenants", json={"name": m["practice"]},
                            headers=bearer(issuer.token(sub))), 201)["id"]
    h = bearer(issuer.token(sub, tenant=uuid.UUID(tenant), role="admin"))
    person = ok(client.post("/api/v1/clients", headers=h, json={
        "first_name": m["first"], "last_name": m["last"],
        "contact": {"email": m["email"]}}), 201)
    ok(client.post(f"/api/v1/clients/{person['id']}/consents", headers=h,
                   json={"purpose": "ai_assistance"}), 201)
    session = ok(client.post(f"/api/v1/clients/{person['id']}/sessions", headers=h, json={
        "started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
        "modality": "video", "transcript": m["transcript"]}), 201)
    ok(client.post(f"/api/v1/sessions/{session['id']}/notes", headers=h,
                   json={"format": "free", "content": {"text": m["note"]}}), 201)
    ok(client.post(f"/api/v1/sessions/{session['id']}/note-drafts", headers=h,
                   json={"format": "SOAP"}), 201)
    conversation = ok(client.post(f"/api/v1/clients/{person['id']}/conversations",
                                  headers=h), 201)
    messages = f"/api/v1/conversations/{conversation['id']}/messages"
    ok(client.post(messages, headers=h, json={"content": m["chat"]}), 201)
    streamed = client.post(messages, headers={**h, "Accept": "text/event-stream"},
                           json={"content": m["chat"]})
    assert streamed.status_code == 201 and b"event: done" in streamed.get_data()
    ok(client.get(f"/api/v1/clients/{person['id']}", headers=h), 200)
    ok(client.get("/api/v1/clients", headers=h, query_string={"status": "active"}), 200)
    assert client.get(f"/api/v1/unknown/{m['path']}", headers=h,
                      query_string={"q": m["query"]}).status_code == 404
    assert client.get("/scenario/boom", headers=h).status_code == 500
    assert client.get("/scenario/db-error", headers=h).status_code == 422

    # Key Vault and Blob Storage through the Azure SDK, after the pipeline started.
    from azure.keyvault.secrets import SecretClient
    from azure.storage.blob import BlobServiceClient

    transport = AzureTransport(m["secret"])
    vault = SecretClient(VAULT_URL, credential=_Credential(), transport=transport)
    assert vault.get_secret("database-app-password").value == m["secret"]
    blobs = BlobServiceClient(ACCOUNT_URL, credential={"account_name": "clinaiscenario",
                                                       "account_key": ACCOUNT_KEY},
                              transport=transport)
    blobs.get_blob_client("exports", f"{uuid.uuid4()}.json").upload_blob(
        json.dumps({"note": m["note"]}).encode(), overwrite=True)

    pipeline = Pipeline.current()
    assert pipeline is not None
    pipeline.force_flush()
    llm_server.shutdown()
    issuer.close()
    print(json.dumps({"tenant_id": tenant, "secrets": [*tokens, spec["llm_key"],
                                                       "scenario-access-token"],
                      "azure_calls": transport.sent,
                      "outbound": {name: os.environ.get(name) for name in OUTBOUND_OFF}}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Secrets from Key Vault and their rotation without a restart.

Key Vault has no local stand-in, so the real ``SecretClient`` runs with its real
``RequestsTransport``; only the socket layer below it is replaced (a requests adapter
that answers as Key Vault does: the 401 challenge, then the secret, or 404). The things
the secrets open are real: PostgreSQL that checks passwords (a SCRAM cluster started for
these tests), the openai SDK against the simulator served over HTTP with an API key, and
the B2C connector route.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from azure.keyvault.secrets import SecretClient
from requests.structures import CaseInsensitiveDict
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from api import create_app, settings
from api.secrets import KeyVaultSource, Secrets
from llm.simulator import Simulator, serve
from tenancy.database import (
    DatabaseConfig,
    create_app_engine,
    create_owner_engine,
    ensure_roles,
)
from tests import pgauth
from tests.conftest import app_config
from tests.llm.test_metering import make_case, post_draft
from tests.test_telemetry import points

VAULT = "https://clinai-test.vault.azure.net"
CHALLENGE = ('Bearer authorization="https://login.microsoftonline.com/'
             '00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"')


class FakeCredential:
    """What DefaultAzureCredential gives the SDK: a bearer token."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("vault-access-token", int(time.time()) + 3600)


class VaultAdapter(requests.adapters.BaseAdapter):
    """Answers the SDK's HTTP requests as Key Vault's REST API does."""

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__()
        self.secrets = secrets
        self.reads: list[str] = []  # names of secrets read with a token
        self.down = False

    def send(self, request: Any, **_kwargs: Any) -> requests.Response:
        if self.down:
            raise requests.ConnectionError("vault unreachable")
        path = request.url.split("?")[0].removeprefix(VAULT)
        name = path.strip("/").split("/")[1]
        if "Authorization" not in request.headers:
            return self._reply(request, 401, {"error": {"code": "Unauthorized"}},
                               {"WWW-Authenticate": CHALLENGE})
        assert request.headers["Authorization"] == "Bearer vault-access-token"
        self.reads.append(name)
        if name not in self.secrets:
            return self._reply(request, 404, {"error": {
                "code": "SecretNotFound", "message": f"A secret with (name/id) {name} "
                                                     "was not found in this key vault."}})
        return self._reply(request, 200, {
            "value": self.secrets[name], "id": f"{VAULT}/secrets/{name}/{uuid.uuid4().hex}",
            "attributes": {"enabled": True}})

    @staticmethod
    def _reply(request: Any, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> requests.Response:
        content = json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json; charset=utf-8",
                       "Content-Length": str(len(content)), **(headers or {})}
        response = requests.Response()
        response.status_code = status
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(content), headers=all_headers,
                                            status=status, preload_content=False)
        response.headers = CaseInsensitiveDict(all_headers)
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def vault_source(secrets: dict[str, str]) -> tuple[KeyVaultSource, VaultAdapter]:
    adapter = VaultAdapter(secrets)
    session = requests.Session()
    session.mount("https://", adapter)
    client = SecretClient(VAULT, FakeCredential(), transport=RequestsTransport(
        session=session, session_owner=False), retry_total=0)
    return KeyVaultSource(VAULT, client=client), adapter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the vault through the SDK ------------------------------------------------------------


def test_settings_come_from_the_vault_through_the_sdk(monkeypatch):
    for name in ("DATABASE_URL", "AZURE_OPENAI_API_KEY", "B2C_CONNECTOR_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    source, _vault = vault_source({"database-url": "postgresql://vault-user:pw@db/clinai",
                                  "azure-openai-api-key": "key-from-vault"})
    config = settings.load({"B2C_CONNECTOR_PASSWORD": "from-env"}, secret_source=source)
    assert config["DATABASE_URL"] == "postgresql://vault-user:pw@db/clinai"
    assert config["AZURE_OPENAI_API_KEY"] == "key-from-vault"
    assert config["B2C_CONNECTOR_PASSWORD"] == "from-env"  # set settings win
    assert set(config["KEY_VAULT_SETTINGS"]) == {"DATABASE_URL", "AZURE_OPENAI_API_KEY"}
    assert source.get("storage-signing-key") is None  # 404: simply not set


def test_a_key_vault_reference_in_the_environment_rotates_like_a_vault_read(monkeypatch):
    """App Service resolves @Microsoft.KeyVault(...) app settings into environment
    variables, cached for up to a day: for a rotating secret the vault also has, the
    vault's newest value is taken and re-read from then on."""
    for name in ("DATABASE_APP_PASSWORD", "B2C_CONNECTOR_PASSWORD", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    source, _vault = vault_source({"database-app-password": "same",
                                   "b2c-connector-password": "rotated-in-the-vault"})
    config = settings.load({"DATABASE_APP_PASSWORD": "same",
                            "B2C_CONNECTOR_PASSWORD": "stale-reference",
                            "DATABASE_URL": "postgresql://env-only/db"}, secret_source=source)
    assert {"DATABASE_APP_PASSWORD", "B2C_CONNECTOR_PASSWORD"} <= set(
        config["KEY_VAULT_SETTINGS"])
    assert config["B2C_CONNECTOR_PASSWORD"] == "rotated-in-the-vault"
    # Not in the vault: the environment's value, fixed.
    assert config["DATABASE_URL"] == "postgresql://env-only/db"
    assert "DATABASE_URL" not in config["KEY_VAULT_SETTINGS"]


def test_a_secret_is_reread_when_old_and_after_a_refused_login(caplog):
    source, vault = vault_source({"database-app-password": "first"})
    clock = Clock()
    secrets = Secrets(source, {"DATABASE_APP_PASSWORD": "first", "STORAGE_SIGNING_KEY": "k"},
                      max_age_seconds=600, clock=clock)
    assert secrets.rotating("DATABASE_APP_PASSWORD")
    assert not secrets.rotating("STORAGE_SIGNING_KEY")  # read at start-up only
    assert not secrets.rotating("AZURE_OPENAI_API_KEY")  # not from the vault
    assert secrets.get("AZURE_OPENAI_API_KEY", "env-key") == "env-key"
    vault.secrets["database-app-password"] = "second"
    assert secrets.get("DATABASE_APP_PASSWORD") == "first" and vault.reads == []
    clock.now += 600  # old enough: re-read on the next use
    assert secrets.get("DATABASE_APP_PASSWORD") == "second" and len(vault.reads) == 1
    # After a refused login: re-read at once, but at most every 30 seconds.
    vault.secrets["database-app-password"] = "third"
    clock.now += 31
    with caplog.at_level(logging.INFO, logger="api.secrets"):
        assert secrets.refresh("DATABASE_APP_PASSWORD") is True
    assert secrets.refresh("DATABASE_APP_PASSWORD") is False and len(vault.reads) == 2
    assert secrets.get("DATABASE_APP_PASSWORD") == "third"
    # The vault down: the cached value stays in use, and the log names no value.
    vault.down = True
    clock.now += 600
    with caplog.at_level(logging.INFO, logger="api.secrets"):
        assert secrets.get("DATABASE_APP_PASSWORD") == "third"
        assert secrets.refresh("DATABASE_APP_PASSWORD") is False
    vault.down = False
    assert secrets.get("DATABASE_APP_PASSWORD") == "third"  # read just now: not again
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "DATABASE_APP_PASSWORD" in logged
    for value in ("first", "second", "third"):
        assert value not in logged


def test_callers_that_failed_together_all_retry_after_one_re_read():
    """Many connections refused at once with the old password: the first re-reads the
    vault, the others find the new value already read and retry too (no 30 s of 500s)."""
    source, vault = vault_source({"database-app-password": "new"})
    clock = Clock()
    secrets = Secrets(source, {"DATABASE_APP_PASSWORD": "old"}, max_age_seconds=600,
                      clock=clock)
    assert secrets.refresh("DATABASE_APP_PASSWORD", "old") is True  # read: "new"
    assert secrets.refresh("DATABASE_APP_PASSWORD", "old") is True  # no read: differs
    assert vault.reads == ["database-app-password"]
    # Refused with the new value too: nothing else to try within 30 s.
    assert secrets.refresh("DATABASE_APP_PASSWORD", "new") is False
    assert vault.reads == ["database-app-password"]


# -- PostgreSQL logins --------------------------------------------------------------------


@pytest.fixture(scope="module")
def scram_url() -> Iterator[str]:
    if pgauth.binaries() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    with pgauth.password_cluster() as url:
        yield url


def test_a_rotated_database_password_is_used_without_a_restart(scram_url):
    role = f"rotating_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(scram_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'first-password'")
        source, vault = vault_source({"database-app-password": "first-password"})
        clock = Clock()
        secrets = Secrets(source, {"DATABASE_APP_PASSWORD": "first-password"},
                          max_age_seconds=600, clock=clock)
        config = DatabaseConfig(admin_url=scram_url, app_role=role,
                                app_password="first-password", secrets=secrets)
        engine = create_app_engine(config)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT current_user")).scalar() == role
            # Rotation: the new password is set on the role and stored in the vault.
            admin.execute(f"ALTER ROLE {role} PASSWORD 'second-password'")
            vault.secrets["database-app-password"] = "second-password"
            clock.now += 60
            engine.dispose()  # a new login (pooled connections stay logged in)
            with engine.connect() as conn:  # refused with the old one, re-read, in
                assert conn.execute(text("SELECT current_user")).scalar() == role
            assert vault.reads == ["database-app-password"]
            # A refused login that the vault cannot mend is raised, without a loop.
            admin.execute(f"ALTER ROLE {role} PASSWORD 'third-password'")
            clock.now += 60
            engine.dispose()
            with pytest.raises(Exception, match="password authentication failed"):
                engine.connect().close()
            assert len(vault.reads) == 2
            with pytest.raises(Exception, match="password authentication failed"):
                engine.connect().close()  # within 30 s of the last read: not re-read
            assert len(vault.reads) == 2
        finally:
            engine.dispose()


def test_a_rotated_admin_url_reaches_the_owner_engine(scram_url):
    url = make_url(scram_url)
    with psycopg.connect(scram_url, autocommit=True) as admin:
        admin.execute("DO $$BEGIN CREATE ROLE clinai_owner NOLOGIN; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END$$")
        admin.execute("CREATE ROLE rotating_admin LOGIN SUPERUSER PASSWORD 'admin-1'")
        first = url.set(username="rotating_admin", password="admin-1")
        first_text = first.render_as_string(hide_password=False)
        source, vault = vault_source({"database-url": first_text})
        secrets = Secrets(source, {"DATABASE_URL": first_text}, max_age_seconds=600,
                          clock=Clock(), min_refresh_seconds=0)
        engine = create_owner_engine(DatabaseConfig(admin_url=first_text, secrets=secrets),
                                     poolclass=NullPool)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT current_user")).scalar() == "clinai_owner"
            admin.execute("ALTER ROLE rotating_admin PASSWORD 'admin-2'")
            vault.secrets["database-url"] = url.set(
                username="rotating_admin", password="admin-2").render_as_string(
                hide_password=False)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT current_user")).scalar() == "clinai_owner"
            assert vault.reads == ["database-url"]
        finally:
            engine.dispose()


# -- the Azure OpenAI key -----------------------------------------------------------------


def test_a_rotated_openai_key_is_used_without_a_restart(app, database_url, issuer,
                                                        make_practice, admin_conn,
                                                        metric_reader):
    accepted = {"key": "openai-key-1"}
    sent: list[str | None] = []
    server = serve(Simulator(), api_key=lambda: accepted["key"])
    handler = server.RequestHandlerClass

    class Recording(handler):  # type: ignore[misc,valid-type]
        def do_POST(self) -> None:
            sent.append(self.headers.get("api-key"))
            super().do_POST()

    server.RequestHandlerClass = Recording
    source, vault = vault_source({"azure-openai-api-key": "openai-key-1"})
    azure_app = create_app(app_config(
        database_url, issuer, AZURE_OPENAI_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
        AZURE_OPENAI_API_KEY=None), secret_source=source)
    vault.reads.clear()  # start-up read every unset secret once
    try:
        practice = make_practice()
        _client, session = make_case(practice)
        http = azure_app.test_client()
        assert post_draft(http, practice.admin.headers, session["id"]).status_code == 201
        assert sent == ["openai-key-1"]
        # The key is rotated: the provider takes only the new one, the vault has it.
        accepted["key"] = vault.secrets["azure-openai-api-key"] = "openai-key-2"
        response = post_draft(http, practice.admin.headers, session["id"])
        assert response.status_code == 201, response.json
        assert sent[1:] == ["openai-key-1", "openai-key-2"]
        assert vault.reads == ["azure-openai-api-key"]
        attempts = admin_conn.execute(
            "SELECT attempts, status FROM public.llm_usage WHERE tenant_id = %s ORDER BY id",
            (practice.id,)).fetchall()
        assert attempts == [(1, "ok"), (2, "ok")]
        # A key the vault cannot mend: 503, no loop, the vault asked no more than once.
        accepted["key"] = "revoked-everywhere"
        response = post_draft(http, practice.admin.headers, session["id"])
        assert response.status_code == 503 and response.json["error"] == "llm_unavailable"
        assert len(vault.reads) == 1  # within 30 s of the last read
        assert sent[3:] == ["openai-key-2"]
        # Each 401 is counted as an LLM error of kind `auth` (the rotation's and the last).
        auth = [p.value for p in points(metric_reader, "clinai.llm.errors")
                if p.attributes["tenant_id"] == str(practice.id)
                and p.attributes["kind"] == "auth"]
        assert auth == [2]
    finally:
        azure_app.extensions["clinai_llm"].client.close()
        azure_app.extensions["clinai_db"].dispose()
        server.shutdown()
        server.server_close()


# -- the B2C connector's password ---------------------------------------------------------


def test_a_rotated_connector_password_is_accepted_without_a_restart(database_url, issuer,
                                                                    app):
    source, vault = vault_source({"b2c-connector-password": "connector-1"})
    connector_app = create_app(app_config(database_url, issuer, B2C_CONNECTOR_PASSWORD=None),
                               secret_source=source)
    vault.reads.clear()  # start-up read every unset secret once
    try:
        http = connector_app.test_client()
        body = {"objectId": "someone-new", "email": "x@example.org"}

        def call(password: str) -> int:
            return http.post("/api/v1/b2c/claims", json=body,
                             auth=("b2c", password)).status_code

        assert call("connector-1") == 200
        vault.secrets["b2c-connector-password"] = "connector-2"
        assert call("connector-2") == 200  # a mismatch re-reads the vault once
        assert vault.reads == ["b2c-connector-password"]
        assert call("connector-1") == 401  # the old one no longer works
        for _ in range(5):
            assert call("guess") == 401
        assert vault.reads == ["b2c-connector-password"]  # guesses do not hammer the vault
    finally:
        connector_app.extensions["clinai_exports"].shutdown()
        connector_app.extensions["clinai_db"].dispose()


def test_the_release_step_sets_the_vaults_newest_app_password(scram_url, monkeypatch):
    """`flask tenancy upgrade` in a process whose environment still holds the old value
    (a Key Vault reference App Service has not refreshed) sets the vault's newest."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("DATABASE_APP_PASSWORD", raising=False)
    source, _vault = vault_source({"database-app-password": "rotated-password"})
    config = settings.load({"DATABASE_APP_PASSWORD": "old-password", "DATABASE_URL": scram_url},
                           secret_source=source)
    secrets = Secrets(source, {k: config[k] for k in config["KEY_VAULT_SETTINGS"]},
                      max_age_seconds=600, clock=Clock())
    db_config = DatabaseConfig(admin_url=scram_url, app_role=role, owner_role=f"o_{role}",
                               app_password=config["DATABASE_APP_PASSWORD"], secrets=secrets)
    assert ensure_roles(db_config) is None
    app_login = make_url(scram_url).set(username=role, password="rotated-password")
    with psycopg.connect(app_login.render_as_string(hide_password=False)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    stale = make_url(scram_url).set(username=role, password="old-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(stale.render_as_string(hide_password=False)).close()


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("AZURE_KEY_VAULT_URL", "http://clinai.vault.azure.net", "must be an https:// URL"),
    ("APPLICATIONINSIGHTS_CONNECTION_STRING", "garbage", "no valid InstrumentationKey"),
    ("APPLICATIONINSIGHTS_CONNECTION_STRING",
     "InstrumentationKey=not-a-uuid;IngestionEndpoint=https://x/", "no valid"),
])
def test_a_bad_azure_setting_stops_start_up_with_one_line(database_url, issuer, setting,
                                                          value, message):
    with pytest.raises(settings.ConfigError, match=message) as refused:
        create_app(app_config(database_url, issuer, **{setting: value}))
    assert "not-a-uuid" not in str(refused.value)  # the value is not repeated

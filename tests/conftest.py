"""Fixtures: a fresh PostgreSQL database per test run, a local OIDC issuer, the app.

The server comes from TEST_DATABASE_URL (an administrative login), default
postgresql://postgres@127.0.0.1:5432/postgres. Each run creates its own database and
drops it at the end; roles are cluster-wide, so tests use their own role names.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from flask import Flask, request_finished
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from werkzeug.http import HTTP_STATUS_CODES

from api import create_app
from tenancy.database import DatabaseConfig, create_owner_engine
from tests.oidc import AUDIENCE, LocalIssuer

RUN_ID = secrets.token_hex(4)
# Roles are cluster-wide: each run has its own, dropped with its database.
OWNER_ROLE = f"clinai_t{RUN_ID}_owner"
APP_ROLE = f"clinai_t{RUN_ID}_app"
APP_PASSWORD = "clinai-test-app-password"
# Files the test apps store (local backend): one folder per test process, not the repo's.
TEST_STORAGE_ROOT = tempfile.mkdtemp(prefix="clinai-test-storage-")


def _server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL",
                          "postgresql://postgres@127.0.0.1:5432/postgres")


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """Create a database for this test run; drop it afterwards."""
    server = _server_url()
    name = f"clinai_test_{RUN_ID}"
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    yield url
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in (APP_ROLE, OWNER_ROLE):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="session")
def issuer() -> Iterator[LocalIssuer]:
    local = LocalIssuer()
    yield local
    local.close()


def app_config(database_url: str, issuer: LocalIssuer, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "TESTING": True,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "DATABASE_APP_PASSWORD": APP_PASSWORD,
        "DATABASE_OWNER_ROLE": OWNER_ROLE,
        "DATABASE_APP_ROLE": APP_ROLE,
        "DATABASE_POOL_SIZE": 5,
        "AUTH_OIDC_METADATA_URL": issuer.metadata_url,
        "AUTH_AUDIENCE": AUDIENCE,
        "B2C_CONNECTOR_USERNAME": "b2c",
        "B2C_CONNECTOR_PASSWORD": "connector-secret",
        "LOG_LEVEL": "WARNING",
        "STORAGE_LOCAL_ROOT": TEST_STORAGE_ROOT,
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def app(database_url: str, issuer: LocalIssuer) -> Iterator[Flask]:
    """The app over a migrated test database, authenticating against the local issuer."""
    application = create_app(app_config(database_url, issuer))
    result = application.test_cli_runner().invoke(args=["tenancy", "upgrade"])
    assert result.exit_code == 0, result.output
    yield application
    application.extensions["clinai_exports"].shutdown()
    application.extensions["clinai_db"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Actor:
    """A user with a token."""

    sub: str
    token: str
    role: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Practice:
    """A tenant created through the onboarding API, with helpers to add members."""

    id: uuid.UUID
    admin: Actor
    client: FlaskClient
    issuer: LocalIssuer
    members: list[Actor] = field(default_factory=list)

    def add_member(self, role: str = "therapist") -> Actor:
        sub = f"user-{uuid.uuid4()}"
        invite = self.client.post("/api/v1/admin/invitations", headers=self.admin.headers,
                                  json={"email": f"{sub}@example.org", "role": role})
        assert invite.status_code == 201, invite.json
        newcomer = self.issuer.token(sub, emails=[f"{sub}@example.org"])
        accepted = self.client.post(
            f"/api/v1/onboarding/invitations/{invite.json['code']}/accept",
            headers={"Authorization": f"Bearer {newcomer}"},
        )
        assert accepted.status_code == 201, accepted.json
        actor = Actor(sub=sub, token=self.issuer.token(sub, tenant=self.id, role=role), role=role)
        self.members.append(actor)
        return actor

    def create_client(self, by: Actor | None = None, *, ai_consent: bool = True,
                      **fields: Any) -> dict[str, Any]:
        """Create a client as ``by`` (the admin by default); with ``ai_consent`` (the
        default, as most AI tests need) also record its consent to AI assistance."""
        body = {"first_name": "Erika", "last_name": "Mustermann", **fields}
        headers = (by or self.admin).headers
        response = self.client.post("/api/v1/clients", json=body, headers=headers)
        assert response.status_code == 201, response.json
        created = dict(response.json)
        if ai_consent:
            consent = self.client.post(f"/api/v1/clients/{created['id']}/consents",
                                       json={"purpose": "ai_assistance"}, headers=headers)
            assert consent.status_code == 201, consent.json
        return created


@pytest.fixture
def make_practice(client: FlaskClient, issuer: LocalIssuer) -> Callable[..., Practice]:
    """Return a factory that onboards a new practice and returns it."""

    def make(name: str = "Praxis Test") -> Practice:
        sub = f"admin-{uuid.uuid4()}"
        response = client.post("/api/v1/onboarding/tenants", json={"name": name},
                               headers={"Authorization": f"Bearer {issuer.token(sub)}"})
        assert response.status_code == 201, response.json
        tenant_id = uuid.UUID(response.json["id"])
        admin = Actor(sub=sub, token=issuer.token(sub, tenant=tenant_id, role="admin"),
                      role="admin")
        return Practice(id=tenant_id, admin=admin, client=client, issuer=issuer)

    return make


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    """The response is ``status`` in the one error shape, with machine code ``error``."""
    body = response.get_json()
    assert response.status_code == status, body
    assert body is not None, response.get_data(as_text=True)
    assert body["error"] == error, body
    assert body["code"] == status, body
    assert body["status"] == HTTP_STATUS_CODES[status], body
    assert isinstance(body["message"], str) and body["message"], body
    assert set(body) <= {"code", "status", "message", "error", "errors"}, body
    return dict(body)


def db_config(database_url: str) -> DatabaseConfig:
    """The database settings of this run's test app (its own roles)."""
    return DatabaseConfig(admin_url=database_url, app_password=APP_PASSWORD,
                          owner_role=OWNER_ROLE, app_role=APP_ROLE)


@pytest.fixture
def owner_engine(app: Flask, database_url: str) -> Iterator[Engine]:
    """An engine acting as the owner role (migrations, provisioning)."""
    engine = create_owner_engine(db_config(database_url), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def metric_reader() -> Any:
    """An in-memory reader on the process's one OpenTelemetry MeterProvider.

    OpenTelemetry lets a process set its global MeterProvider once; the tests set it here,
    once per test process, instead of each test installing (and leaking) its own.
    """
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


@pytest.fixture
def admin_conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection to the test database, for arranging and inspecting state."""
    with psycopg.connect(_conninfo(database_url), autocommit=True) as conn:
        yield conn


@pytest.fixture
def app_role_conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the app role, as requests make them."""
    url = make_url(database_url).set(username=APP_ROLE, password=APP_PASSWORD)
    with psycopg.connect(_conninfo(url.render_as_string(hide_password=False))) as conn:
        yield conn


# --- The spec tells the truth about errors -------------------------------------------
# Every error response any test provokes must carry a registered ``error`` code with its
# status, and be documented (status and code) on the operation that answered it.

_undocumented: list[str] = []


def _operation(app: Flask, rule: str, method: str) -> dict[str, Any] | None:
    spec = app.extensions.get("tests.openapi")
    if spec is None:
        api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
        spec = app.extensions["tests.openapi"] = api.spec.to_dict()
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
    operation: dict[str, Any] | None = spec["paths"].get(path, {}).get(method.lower())
    return operation


def _check_error_documented(sender: Flask, response: Any, **_extra: Any) -> None:
    from flask import request

    from api.error_codes import ERROR_CODES

    if response.status_code < 400 or not response.is_json:
        return
    code = (response.get_json(silent=True) or {}).get("error")
    where = f"{request.method} {request.path} -> {response.status_code} {code}"
    known = ERROR_CODES.get(code)
    if known is None or known.status != response.status_code:
        _undocumented.append(f"{where}: not in api/error_codes.py with this status")
        return
    rule = request.url_rule
    if rule is None or response.status_code in (405, 500):
        return  # no operation answered (unknown path), or not an operation's own error
    operation = _operation(sender, rule.rule, request.method)
    if operation is None:
        return  # not an API operation (health probes, docs)
    documented = operation["responses"].get(str(response.status_code), {})
    examples = documented.get("content", {}).get("application/json", {}).get("examples", {})
    if code not in examples:
        _undocumented.append(f"{where}: not documented on {request.method} {rule.rule}")


@pytest.fixture(autouse=True)
def errors_are_documented() -> Iterator[None]:
    """Fail a test whose requests got an error its operation does not document."""
    _undocumented.clear()
    request_finished.connect(_check_error_documented)
    try:
        yield
    finally:
        request_finished.disconnect(_check_error_documented)
    found = sorted(set(_undocumented))
    _undocumented.clear()
    assert not found, "errors missing from the OpenAPI document:\n" + "\n".join(found)

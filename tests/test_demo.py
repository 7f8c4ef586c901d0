"""The demo practice (``flask dev seed``) and the README's copy-paste block.

Both run against the test database with a development app (APP_ENV=development, no
AUTH_OIDC_METADATA_URL): the tokens come from its development issuer. The tests of this
module share one demo practice and run in file order: the first run of the seed creates
it, the later ones find it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from api import create_app
from api.demo import (
    DEMO_ADMIN_ID,
    DEMO_CLIENTS,
    DEMO_PRACTICE_NAME,
    DEMO_THERAPIST_ID,
    SeedError,
    seed,
)
from tests.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE, app_config, assert_error

ROOT = Path(__file__).resolve().parent.parent
EXPORTED = {"CLINAI_TENANT_ID", "ADMIN_TOKEN", "THERAPIST_TOKEN", "CLIENT_ID", "SESSION_ID"}


@pytest.fixture(scope="module")
def dev_app(app: Flask, database_url: str, issuer: Any) -> Iterator[Flask]:
    """A development app over the (migrated) test database."""
    application = create_app(app_config(database_url, issuer, APP_ENV="development",
                                        AUTH_OIDC_METADATA_URL=None, AUTH_AUDIENCE=None))
    yield application
    application.extensions["clinai_db"].dispose()


def parse_exports(stdout: str) -> dict[str, str]:
    """The seed's stdout: only comment lines and ``export NAME=value`` lines."""
    values = {}
    for line in stdout.splitlines():
        if line.startswith("# "):
            continue
        match = re.fullmatch(r"export ([A-Z_]+)=([A-Za-z0-9._-]+)", line)
        assert match, f"neither an export nor a comment: {line!r}"
        values[match[1]] = match[2]
    assert set(values) == EXPORTED
    return values


def run_seed(application: Flask) -> tuple[str, dict[str, str]]:
    result = application.test_cli_runner().invoke(args=["dev", "seed"])
    assert result.exit_code == 0, result.output
    return result.stdout, parse_exports(result.stdout)


@pytest.fixture(scope="module")
def first_seed(dev_app: Flask) -> tuple[str, dict[str, str]]:
    return run_seed(dev_app)


def get(client: FlaskClient, path: str, token: str) -> Any:
    response = client.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, (path, response.get_json())
    return response.get_json()


def inventory(client: FlaskClient, token: str) -> list[tuple[Any, ...]]:
    """Every client, session and note of the practice, as the admin sees them."""
    rows: list[tuple[Any, ...]] = []
    for c in get(client, "/clients?page_size=100", token):
        rows.append(("client", c["first_name"], c["last_name"], c["assigned_therapist_id"]))
        for s in get(client, f"/clients/{c['id']}/sessions?page_size=100", token):
            rows.append(("session", c["last_name"], s["started_at"], bool(s["transcript"])))
            for n in get(client, f"/sessions/{s['id']}/notes?page_size=100", token):
                rows.append(("note", s["started_at"], n["format"], n["status"], n["source"]))
    return sorted(rows)


def test_seed_creates_the_demo_practice(dev_app, first_seed):
    stdout, values = first_seed
    assert "created 1 practice, 1 member, 4 clients, 5 sessions, 3 notes, 4 consents" in stdout
    assert "expire after 8 hours" in stdout
    client = dev_app.test_client()
    admin, therapist = values["ADMIN_TOKEN"], values["THERAPIST_TOKEN"]

    tenant = get(client, "/tenant", admin)
    assert (tenant["id"], tenant["name"]) == (values["CLINAI_TENANT_ID"], DEMO_PRACTICE_NAME)
    members = {m["user_id"]: m["role"] for m in get(client, "/admin/members", admin)}
    assert members == {DEMO_ADMIN_ID: "admin", DEMO_THERAPIST_ID: "therapist"}

    everyone = get(client, "/clients", admin)
    assert {(c["first_name"], c["last_name"]) for c in everyone} == {
        (spec.first_name, spec.last_name) for spec in DEMO_CLIENTS}
    assert any(c["assigned_therapist_id"] is None for c in everyone)

    # The therapist sees only the clients assigned to her; another one is a 404.
    hers = get(client, "/clients", therapist)
    assert {(c["first_name"], c["last_name"]) for c in hers} == {
        (spec.first_name, spec.last_name) for spec in DEMO_CLIENTS if spec.owner == "therapist"}
    assert {c["assigned_therapist_id"] for c in hers} == {DEMO_THERAPIST_ID}
    assert values["CLIENT_ID"] in {c["id"] for c in hers}
    unassigned = next(c for c in everyone if c["assigned_therapist_id"] is None)
    hidden = client.get(f"/api/v1/clients/{unassigned['id']}",
                        headers={"Authorization": f"Bearer {therapist}"})
    assert hidden.status_code == 404

    # CLIENT_ID's sessions: the older has a signed note, SESSION_ID (the newer) a transcript.
    sessions = get(client, f"/clients/{values['CLIENT_ID']}/sessions", therapist)
    assert [s["id"] for s in sessions] == [values["SESSION_ID"], sessions[1]["id"]]  # newest first
    assert "wind-down" in get(client, f"/sessions/{values['SESSION_ID']}", therapist)[
        "transcript"]
    notes = get(client, f"/sessions/{sessions[1]['id']}/notes", therapist)
    assert [(n["format"], n["status"], n["signed_by"]) for n in notes] == [
        ("SOAP", "signed", DEMO_THERAPIST_ID)]
    assert get(client, f"/sessions/{values['SESSION_ID']}/notes", therapist) == []


def test_seed_again_creates_nothing_and_prints_working_tokens(dev_app, first_seed):
    _, first = first_seed
    client = dev_app.test_client()
    before = inventory(client, first["ADMIN_TOKEN"])
    assert len(before) == 4 + 5 + 3

    stdout, again = run_seed(dev_app)
    assert "nothing created" in stdout
    for key in ("CLINAI_TENANT_ID", "CLIENT_ID", "SESSION_ID"):
        assert again[key] == first[key]
    assert inventory(client, again["ADMIN_TOKEN"]) == before
    assert get(client, "/tenant", again["THERAPIST_TOKEN"])["role"] == "therapist"
    assert len(get(client, "/clients", again["THERAPIST_TOKEN"])) == 2


@pytest.mark.parametrize("overrides", [
    {"APP_ENV": "test"},
    {"APP_ENV": "production", "AZURE_OPENAI_ENDPOINT": "https://clinai.openai.azure.com"},
    {"APP_ENV": "development"},  # with AUTH_OIDC_METADATA_URL set: no development issuer
], ids=["test", "production", "development_with_oidc"])
def test_seed_refused_outside_development(app, database_url, issuer, overrides):
    application = create_app(app_config(database_url, issuer, **overrides))
    try:
        result = application.test_cli_runner().invoke(args=["dev", "seed"])
        assert result.exit_code == 1
        assert "APP_ENV=development" in result.output
        assert "export" not in result.output
        with pytest.raises(SeedError):
            seed(application)
    finally:
        application.extensions["clinai_db"].dispose()


def readme_try_it_block() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [block for block in blocks if "source instance/demo.env" in block]
    assert len(found) == 1, "the README's try-it block (it sources instance/demo.env)"
    return found[0]


@pytest.mark.slow
def test_readme_block_runs_against_a_server(dev_app, database_url, first_seed, tmp_path):
    """The README's try-it block, unchanged but for the server's address and demo.env's
    place, runs in bash against a development server; every curl must get a 2xx."""
    stdout, _ = run_seed(dev_app)  # what scripts/serve --demo writes to instance/demo.env
    demo_env = tmp_path / "demo.env"
    demo_env.write_text(stdout)
    server = make_server("127.0.0.1", 0, dev_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        block = readme_try_it_block()
        assert "API=http://127.0.0.1:8000\n" in block
        block = block.replace("API=http://127.0.0.1:8000\n",
                              f"API=http://127.0.0.1:{server.server_port}\n")
        block = block.replace("source instance/demo.env", f"source {demo_env}")
        block = block.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
        script = ("set -euo pipefail\n"
                  # any answer other than 2xx fails the line, and with it the block
                  'curl() { command curl --fail-with-body --max-time 60 "$@"; }\n'
                  f"{block}\n"
                  'echo "done: $CLIENT_ID $SESSION_ID $TENANT"\n')
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("DATABASE_", "TEST_DATABASE", "AUTH_", "AZURE_",
                                      "APP_ENV", "CLINAI_", "FLASK_"))}
        env.update(DATABASE_URL=database_url, DATABASE_OWNER_ROLE=OWNER_ROLE,
                   DATABASE_APP_ROLE=APP_ROLE, DATABASE_APP_PASSWORD=APP_PASSWORD,
                   LOG_LEVEL="WARNING")
        result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env,  # noqa: S603, S607
                                capture_output=True, text=True, timeout=300, check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    out = result.stdout
    assert "Erika Musterfrau (fiktiv): unassigned" in out  # the admin's list
    assert "wind-down routine" in out  # the demo session's transcript
    assert out.count('"source": "ai"') == 2  # two drafts
    assert '"name": "Praxis Beispiel (fiktiv)"' in out  # the second practice
    assert '"role": "therapist"' in out  # the invitation, accepted
    assert re.search(r"\[\]\ndone: [0-9a-f-]{36} [0-9a-f-]{36} [0-9a-f-]{36}\n$", out), out


# --- The OpenAPI request examples work as written against the demo practice ----------
# Runs last in this module: it adds records to the demo practice.

def test_every_request_example_works_as_written(dev_app, first_seed):
    """Send each operation's request example, verbatim, in the demo practice."""
    _stdout, values = first_seed
    client = dev_app.test_client()
    spec = client.get("/openapi.json").get_json()
    bodies = {(m.upper(), p): op["requestBody"]["content"]["application/json"]["example"]
              for p, item in spec["paths"].items() for m, op in item.items()
              if isinstance(op, dict) and "requestBody" in op}
    admin = {"Authorization": f"Bearer {values['ADMIN_TOKEN']}"}
    therapist = {"Authorization": f"Bearer {values['THERAPIST_TOKEN']}"}
    newcomer_token = dev_app.extensions["clinai_dev_issuer"].mint(
        subject="example-newcomer", tenant=None, role=None,
        tenant_claim=dev_app.config["AUTH_TENANT_CLAIM"],
        role_claim=dev_app.config["AUTH_ROLE_CLAIM"])
    newcomer = {"Authorization": f"Bearer {newcomer_token}"}
    connector = {"Authorization": "Basic " + __import__("base64").b64encode(
        b"b2c:connector-secret").decode()}
    ids: dict[str, str] = {"user_id": DEMO_THERAPIST_ID}
    # In an order where each step's ids come from the one before; who sends it.
    plan = [
        ("POST", "/api/v1/onboarding/tenants", newcomer, None),
        ("POST", "/api/v1/admin/invitations", admin, None),
        ("PATCH", "/api/v1/admin/members/{user_id}", admin, None),
        ("PATCH", "/api/v1/admin/settings", admin, None),
        ("POST", "/api/v1/clients", admin, "client_id"),
        ("PATCH", "/api/v1/clients/{client_id}", therapist, None),
        ("POST", "/api/v1/clients/{client_id}/consents", therapist, None),
        ("POST", "/api/v1/clients/{client_id}/sessions", therapist, "session_id"),
        ("PATCH", "/api/v1/sessions/{session_id}", therapist, None),
        ("POST", "/api/v1/sessions/{session_id}/notes", therapist, "note_id"),
        ("PATCH", "/api/v1/notes/{note_id}", therapist, None),
        ("POST", "/api/v1/notes/{note_id}/amendments", therapist, None),
        ("POST", "/api/v1/sessions/{session_id}/note-drafts", therapist, None),
        ("POST", "/api/v1/clients/{client_id}/conversations", therapist, "conversation_id"),
        ("POST", "/api/v1/conversations/{conversation_id}/messages", therapist, None),
        ("POST", "/api/v1/b2c/claims", connector, None),
        ("POST", "/api/v1/clients/{client_id}/restriction", admin, None),
        # The client the examples made has clinical documentation and no treatment end:
        # its erasure (confirmed with its id) is refused with 409 and changes nothing.
        ("DELETE", "/api/v1/clients/{client_id}", admin, None),
        # Last, after the claims check below: the example offboards the demo practice.
        ("DELETE", "/api/v1/admin/tenant", admin, None),
    ]
    assert {(m, p) for m, p, _h, _k in plan} == set(bodies), "plan misses an operation"
    def send(method: str, path: str, headers: dict[str, str], keep: str | None) -> None:
        url = path.format(**ids)
        sent = dict(headers)
        body = bodies[(method, path)]
        if method == "PATCH" and "{" in path and "{user_id}" not in path:
            sent["If-Match"] = client.get(url, headers=headers).headers["ETag"]
        if path.endswith("/amendments"):  # only a signed note takes amendments
            signed = client.post(url.removesuffix("/amendments") + "/sign", headers=headers)
            assert signed.status_code == 200, signed.get_json()
            sent["If-Match"] = signed.headers["ETag"]
        expected: tuple[int, ...] = (200, 201)
        if (method, path) == ("DELETE", "/api/v1/clients/{client_id}"):
            body, expected = {**body, "confirm": ids["client_id"]}, (409,)
        response = client.open(url, method=method, json=body, headers=sent)
        assert response.status_code in expected, (method, path, response.get_json())
        if keep:
            ids[keep] = response.get_json()["id"]

    for step in plan[:-1]:
        send(*step)
    claims = client.post("/api/v1/b2c/claims", json=bodies[("POST", "/api/v1/b2c/claims")],
                         headers=connector).get_json()
    assert claims["extension_tenant_id"] == values["CLINAI_TENANT_ID"]
    assert claims["extension_role"] == "therapist"
    send(*plan[-1])
    assert_error(client.get("/api/v1/clients", headers=therapist), 403, "tenant_inactive")

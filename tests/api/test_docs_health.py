"""The OpenAPI document, offline docs UI, health probes, request ids, JSON logs."""

from __future__ import annotations

import io
import json
import logging

from api.logs import JsonFormatter


def test_openapi_declares_bearer_security(client):
    """Every route and status is pinned by tests/api/test_spec_snapshot.py."""
    spec = client.get("/openapi.json").json
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearerAuth": []}]
    create = spec["paths"]["/api/v1/clients"]["post"]
    assert "example" in json.dumps(create["requestBody"])


def test_docs_ui_is_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http" not in html.replace("http-equiv", "")  # no CDN or remote asset
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        with client.get(f"/docs/static/{asset}") as response:
            assert response.status_code == 200


def test_health_probes(client):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ready"}


def test_request_id_and_json_logs(make_practice):
    practice = make_practice()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("clinai.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        response = practice.client.post(
            "/api/v1/clients", headers={**practice.admin.headers, "X-Request-ID": "req-123"},
            json={"first_name": "Quentin", "last_name": "Quenstedt"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    server_id = response.headers["X-Request-ID"]
    assert server_id != "req-123" and len(server_id) == 32  # the server's own id
    lines = stream.getvalue().splitlines()
    assert lines, "no access log line"
    entry = json.loads(lines[-1])
    assert (entry["request_id"], entry["client_request_id"]) == (server_id, "req-123")
    assert entry["tenant_id"] == str(practice.id)
    assert entry["route"] == "/api/v1/clients"
    assert "Quenstedt" not in "".join(lines)

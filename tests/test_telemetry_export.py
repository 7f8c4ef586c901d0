"""Application Insights for real: the Azure Monitor exporter against a local stand-in.

Each test process may set OpenTelemetry's providers once, so the app runs in a child
process (tests/telemetry_scenario.py, and the ``flask`` CLI) with the stand-in's
connection string; this process reads what arrived at the stand-in.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import APP_PASSWORD, APP_ROLE, OWNER_ROLE, TEST_STORAGE_ROOT
from tests.ingestion import IngestionStandIn

ROOT = Path(__file__).resolve().parents[1]


def child_env(stand_in: IngestionStandIn, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}
    env.update({
        "APPLICATIONINSIGHTS_CONNECTION_STRING": stand_in.connection_string,
        # Short batches (the scenario flushes anyway); the exporter's retry files, if any,
        # in the test's folder.
        "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000", "TMPDIR": str(tmp),
    })
    env.update(extra)
    return env


def make_markers() -> dict[str, str]:
    tag = secrets.token_hex(3)
    names = ("practice", "first", "last", "transcript", "note", "chat", "path", "query",
             "literal", "parameter", "secret")
    markers = {name: f"Qx{name.capitalize()}{tag}" for name in names}
    markers["email"] = f"qx.mail.{tag}@example.org"
    return markers


@dataclass
class Run:
    stand_in: IngestionStandIn
    markers: dict[str, str]
    tenant_id: str
    secrets: list[str]
    azure_calls: list[str]
    outbound: dict[str, str]

    def of(self, base_type: str) -> list[dict[str, Any]]:
        return self.stand_in.items(base_type)

    @staticmethod
    def data(item: dict[str, Any]) -> dict[str, Any]:
        base: dict[str, Any] = item["data"]["baseData"]
        return base


@pytest.fixture(scope="module")
def run(app, database_url, tmp_path_factory) -> Iterator[Run]:
    """The scenario, once, in a child process exporting to the stand-in."""
    stand_in = IngestionStandIn()
    markers = make_markers()
    spec = {"database_url": database_url, "owner_role": OWNER_ROLE, "app_role": APP_ROLE,
            "app_password": APP_PASSWORD, "storage_root": TEST_STORAGE_ROOT,
            "llm_key": f"llm-key-{secrets.token_hex(8)}", "markers": markers}
    env = child_env(stand_in, tmp_path_factory.mktemp("scenario"),
                    CLINAI_SCENARIO=json.dumps(spec))
    try:
        done = subprocess.run([sys.executable, "-m", "tests.telemetry_scenario"],
                              cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-4000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        yield Run(stand_in, markers, result["tenant_id"], result["secrets"],
                  result["azure_calls"], result["outbound"])
    finally:
        stand_in.close()


def test_the_exporter_calls_nothing_but_the_ingestion_endpoint(run):
    assert run.stand_in.other == []  # no live metrics (they would come here)
    # Statsbeat and the control plane would go to Microsoft's hosts, not the stand-in: the
    # pipeline turned them off (the child's environment did not set them).
    assert run.outbound == dict.fromkeys(run.outbound, "true") and len(run.outbound) == 3
    counts = run.stand_in.counts()
    print("envelopes by type:", json.dumps(counts, sort_keys=True))
    assert {"RequestData", "RemoteDependencyData", "MessageData", "ExceptionData",
            "MetricData"} <= set(counts)


def test_cloud_role_and_instance(run):
    tags = [item["tags"] for item in run.stand_in.items()]
    assert {t["ai.cloud.role"] for t in tags} == {"clinai-api"}
    instances = {t["ai.cloud.roleInstance"] for t in tags}
    assert len(instances) == 1 and "" not in instances


def test_requests_are_named_by_route_template_with_status(run):
    requests = {(Run.data(r)["name"], Run.data(r)["responseCode"])
                for r in run.of("RequestData")}
    assert {("POST /api/v1/onboarding/tenants", "201"),
            ("POST /api/v1/clients", "201"),
            ("POST /api/v1/sessions/<uuid:session_id>/notes", "201"),
            ("POST /api/v1/sessions/<uuid:session_id>/note-drafts", "201"),
            ("POST /api/v1/conversations/<uuid:conversation_id>/messages", "201"),
            ("GET /api/v1/clients/<uuid:client_id>", "200"),
            ("GET /api/v1/clients", "200"),
            ("GET /(unmatched)", "404"),
            ("GET /scenario/boom", "500"),
            ("GET /scenario/db-error", "422")} <= requests
    created = next(r for r in run.of("RequestData")
                   if Run.data(r)["name"] == "POST /api/v1/clients")
    properties = Run.data(created)["properties"]
    assert properties["tenant_id"] == run.tenant_id and len(properties["request_id"]) == 32
    assert Run.data(created)["url"].endswith("/api/v1/clients")


def _dependencies(run, kind: str) -> list[dict[str, Any]]:
    return [Run.data(d) for d in run.of("RemoteDependencyData") if Run.data(d)["type"] == kind]


def test_postgresql_dependencies_arrive_inside_their_requests(run):
    database = _dependencies(run, "postgresql")
    assert len(database) > 10
    assert all(d["target"].startswith("127.0.0.1|") for d in database)
    statements = [d["data"] for d in database]
    assert any("INSERT INTO" in s for s in statements)
    assert "SELECT length(?)" in statements  # the inlined literal, stripped
    request_ids = {Run.data(r)["id"] for r in run.of("RequestData")}
    parents = {d["tags"].get("ai.operation.parentId") for d in run.of("RemoteDependencyData")
               if Run.data(d)["type"] == "postgresql"}
    assert parents & request_ids  # correlated with the request that ran them


def test_azure_openai_blob_and_key_vault_dependencies_arrive(run):
    http = _dependencies(run, "HTTP")
    openai_calls = [d for d in http if d["name"].startswith("POST /openai/deployments/")]
    assert len(openai_calls) == 3  # a draft, a chat reply and a streamed one
    assert all(d["resultCode"] == "200" and "?" not in d["data"] for d in openai_calls)
    in_proc = {d["name"] for d in _dependencies(run, "InProc")}  # azure-core's spans
    assert {"SecretClient.get_secret", "BlobClient.upload_blob"} <= in_proc
    assert any(d["name"].startswith("PUT /exports/") for d in http)
    assert any(d["name"].startswith("GET /secrets/") for d in http)
    # The exporter's own transmissions are never traced (no telemetry about telemetry).
    assert not [d for d in http if "/v2.1/track" in d.get("data", "")]


def test_exceptions_arrive_with_type_and_stack_not_message(run):
    [exception] = run.of("ExceptionData")
    [details] = Run.data(exception)["exceptions"]
    assert details["typeName"] == "RuntimeError"
    assert details["message"] == "unhandled exception in GET /scenario/boom"
    assert "telemetry_scenario.py" in details["stack"] and details["hasFullStack"]


def test_logs_carry_request_and_tenant_ids_and_never_the_sdks_http_logging(run):
    messages = [Run.data(m) for m in run.of("MessageData")]
    created = next(m for m in messages if m["message"] == "tenant created")
    assert created["properties"]["tenant_id"] == run.tenant_id
    assert created["properties"]["request_id"]
    refused = next(m for m in messages if m["message"].startswith("database refused"))
    assert refused["properties"]["request_id"]
    assert not [m for m in messages if m["properties"].get("logger_name", "").startswith(
        ("azure", "opentelemetry"))]
    assert not [m for m in messages if m["message"] == "request"]  # access lines


def test_token_metric_adds_up_to_the_ledger(run, admin_conn):
    totals: Counter[str] = Counter()
    for item in run.of("MetricData"):
        data = Run.data(item)
        if data["metrics"][0]["name"] == "clinai.llm.tokens" and \
                data["properties"]["tenant_id"] == run.tenant_id:
            assert set(data["properties"]) == {"tenant_id", "feature", "deployment", "kind"}
            totals[data["properties"]["kind"]] += data["metrics"][0]["value"]
    row = admin_conn.execute(
        "SELECT sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), count(*) "
        "FROM public.llm_usage WHERE tenant_id = %s", (run.tenant_id,)).fetchone()
    assert row[3] == 3
    assert (totals["prompt"], totals["completion"], totals["cached"]) == tuple(row[:3])


def test_metrics_are_ours_only_within_ten_dimensions(run):
    names = set()
    for item in run.of("MetricData"):
        data = Run.data(item)
        names.add(data["metrics"][0]["name"])
        assert len(data.get("properties", {})) <= 10
    # _OTELRESOURCE_ is the exporter's record of the resource (role name and instance).
    assert names <= {"clinai.llm.tokens", "clinai.http.server.duration", "_OTELRESOURCE_"}
    assert "clinai.http.server.duration" in names


def test_canary_no_marker_token_or_key_in_any_exported_item(run):
    """Names, e-mail, transcript, note and chat text, a path and query the caller typed, a
    value inlined in SQL, a bound parameter, a secret read from Key Vault and uploaded
    text: none of it, nor any bearer token or key, in requests, dependencies (SQL text
    included), logs, exceptions or metrics."""
    everything = run.stand_in.text()
    assert len(run.stand_in.items()) > 50
    leaked = {name: value for name, value in run.markers.items() if value in everything}
    assert leaked == {}
    assert [s[:12] for s in run.secrets if s in everything] == []
    assert "Bearer" not in everything and "api-key" not in everything.lower()


def test_flask_cli_works_with_the_connection_string_set(app, database_url, issuer, tmp_path):
    """``flask`` finds ``wsgi:app`` itself (flask.Flask is not replaced); the command's
    own telemetry is exported when it exits."""
    stand_in = IngestionStandIn()
    try:
        env = child_env(stand_in, tmp_path, DATABASE_URL=database_url,
                        DATABASE_OWNER_ROLE=OWNER_ROLE, DATABASE_APP_ROLE=APP_ROLE,
                        DATABASE_APP_PASSWORD=APP_PASSWORD, APP_ENV="test",
                        AUTH_OIDC_METADATA_URL=issuer.metadata_url,
                        AUTH_AUDIENCE="api://clinai-test", STORAGE_LOCAL_ROOT=TEST_STORAGE_ROOT)
        flask = str(Path(sys.executable).with_name("flask"))
        for args in (["tenancy", "list"], ["--app", "wsgi:app", "tenancy", "list"]):
            done = subprocess.run([flask, *args], cwd=ROOT, env=env,  # noqa: S603
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stderr[-3000:]
            assert "Failed to find" not in done.stderr and "not obtained" not in done.stderr
            assert "Overriding of current" not in done.stderr  # one app, one pipeline
        dependencies = stand_in.items("RemoteDependencyData")
        assert any(Run.data(d)["type"] == "postgresql" for d in dependencies)
        assert stand_in.other == []
    finally:
        stand_in.close()

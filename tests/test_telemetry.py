"""Telemetry in this process: what the allow-lists let through, and the custom metrics.

The exporter itself, against a local ingestion stand-in, is tested in a child process
(tests/test_telemetry_export.py): OpenTelemetry's providers can be set once per process,
and this one's MeterProvider is the in-memory ``metric_reader``.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from flask import Flask, g
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from api import settings, telemetry
from api.settings import ConfigError
from llm.gateway import METRICS as LLM_METRICS
from llm.simulator import Fault
from tests.llm.test_features import TRANSCRIPT

MARKER = "Zwetschgenbaum"


def span(kind: SpanKind, attributes: dict, name: str = "x", **kwargs) -> ReadableSpan:
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    return ReadableSpan(name=name, context=context, kind=kind, attributes=attributes,
                        resource=Resource.create({}), start_time=1, end_time=2, **kwargs)


# -- spans -----------------------------------------------------------------------------


def test_server_span_keeps_the_route_template_and_nothing_the_caller_sent():
    scrubbed = telemetry.scrub_span(span(SpanKind.SERVER, {
        "http.request.method": "GET", "http.method": "GET",
        "http.route": "/api/v1/downloads/<string:token>",
        "http.target": f"/api/v1/downloads/{MARKER}?q={MARKER}",
        "url.path": f"/api/v1/downloads/{MARKER}", "url.query": f"q={MARKER}",
        "http.url": f"https://api.example.org/api/v1/downloads/{MARKER}?q={MARKER}",
        "http.scheme": "https", "http.host": "api.example.org", "http.status_code": 200,
        "http.user_agent": f"Browser ({MARKER})", "client.address": "198.51.100.7",
        "net.peer.ip": "198.51.100.7", "enduser.id": MARKER,
        "request_id": "r1", "tenant_id": "t1", "_MS.sampleRate": 100.0,
    }, name=f"GET /api/v1/downloads/{MARKER}"))
    attributes = dict(scrubbed.attributes)
    assert MARKER not in repr(attributes) and MARKER not in scrubbed.name
    assert "198.51.100.7" not in repr(attributes)
    assert scrubbed.name == "GET /api/v1/downloads/<string:token>"
    assert attributes["url.full"] == "https://api.example.org/api/v1/downloads/<string:token>"
    assert attributes["http.status_code"] == 200
    assert (attributes["request_id"], attributes["tenant_id"]) == ("r1", "t1")
    assert attributes["_MS.sampleRate"] == 100.0


def test_an_unmatched_path_is_not_named():
    scrubbed = telemetry.scrub_span(span(SpanKind.SERVER, {
        "http.method": "GET", "http.target": f"/{MARKER}", "http.scheme": "http",
        "http.host": "localhost"}, name=f"GET /{MARKER}"))
    assert scrubbed.name == "GET /(unmatched)"
    assert MARKER not in repr(dict(scrubbed.attributes))


def test_dependency_urls_lose_credentials_and_query_and_events_and_status_text_go():
    scrubbed = telemetry.scrub_span(span(SpanKind.CLIENT, {
        "http.request.method": "PUT",
        "url.full": f"https://user:{MARKER}@acct.blob.core.windows.net/exports/1.zip"
                    f"?sig={MARKER}&se=2026",
        "server.address": "acct.blob.core.windows.net", "http.response.status_code": 201,
    }, status=Status(StatusCode.ERROR, f"ValueError: {MARKER}"),
        events=[]))
    assert dict(scrubbed.attributes)["url.full"] == \
        "https://acct.blob.core.windows.net/exports/1.zip"
    assert scrubbed.status.status_code is StatusCode.ERROR
    assert not scrubbed.status.description
    assert scrubbed.events == ()


def test_exception_events_are_not_exported():
    from opentelemetry.sdk.trace import Event

    event = Event("exception", {"exception.type": "IntegrityError",
                                "exception.message": f"Key (email)=({MARKER})",
                                "exception.stacktrace": f"... {MARKER}"})
    scrubbed = telemetry.scrub_span(span(SpanKind.CLIENT, {"db.system": "postgresql"},
                                         events=[event]))
    assert scrubbed.events == ()


@pytest.mark.parametrize(("statement", "expected"), [
    ("SELECT * FROM clients WHERE id = %(id)s", "SELECT * FROM clients WHERE id = %(id)s"),
    (f"SELECT '{MARKER}'", "SELECT ?"),
    (f"SELECT 'it''s {MARKER}', E'{MARKER}\\n', $${MARKER}$$, $q${MARKER}$q$",
     "SELECT ?, ?, ?, ?"),
    (f"SET LOCAL app.note = '{MARKER}'; SELECT contact->>'email'",
     "SET LOCAL app.note = ?; SELECT contact->>?"),
    ('SELECT 1 FROM "t_0a1b"."clients"', 'SELECT 1 FROM "t_0a1b"."clients"'),
])
def test_sql_literals_are_stripped(statement, expected):
    assert telemetry.strip_sql_literals(statement) == expected
    scrubbed = telemetry.scrub_span(span(SpanKind.CLIENT, {"db.statement": statement,
                                                           "db.system": "postgresql"}))
    assert dict(scrubbed.attributes)["db.statement"] == expected


# -- exceptions and logs ---------------------------------------------------------------


def _raise_chain() -> BaseException:
    try:
        try:
            raise KeyError(f"{MARKER}@example.org")
        except KeyError as inner:
            raise ValueError(f"duplicate key (email)=({MARKER})") from inner
    except ValueError as exc:
        return exc


def test_scrubbed_stack_has_types_and_frames_but_no_messages():
    stack = telemetry.scrubbed_stack(_raise_chain())
    assert MARKER not in stack
    assert "KeyError" in stack and "ValueError" in stack
    assert "_raise_chain" in stack and "test_telemetry.py" in stack
    assert stack.index("KeyError") < stack.index("ValueError")  # the cause first


@pytest.fixture
def exported():
    """An ExportHandler on its own in-memory LoggerProvider, on the root logger."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = telemetry.ExportHandler(logger_provider=provider)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [r.log_record for r in exporter.get_finished_logs()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_own_logs_are_exported_with_request_and_tenant_ids(exported):
    app = Flask("records")
    with app.test_request_context("/x"):
        g.request_id = "req-1"
        g.actor = type("A", (), {"tenant_id": uuid.UUID(int=7)})()
        logging.getLogger("api.things").info("export %s started", "e-1",
                                             extra={"route": "/x", "status": 200})
    [record] = exported()
    assert record.body == "export e-1 started"
    attributes = dict(record.attributes)
    assert attributes["request_id"] == "req-1"
    assert attributes["tenant_id"] == str(uuid.UUID(int=7))
    assert (attributes["route"], attributes["status"]) == ("/x", 200)


def test_other_libraries_logs_only_from_warning_and_without_their_arguments(exported):
    logging.getLogger("somelib").info("connected to %s", MARKER)
    logging.getLogger("somelib").warning("slow query for %s", MARKER, extra={"who": MARKER})
    [record] = exported()
    assert record.body == "slow query for %s"
    assert MARKER not in repr(dict(record.attributes))


@pytest.mark.parametrize("name", ["azure.core.pipeline.policies.http_logging_policy",
                                  "azure.monitor.opentelemetry.exporter.export._base",
                                  "opentelemetry.sdk.trace", "clinai.access"])
def test_the_pipelines_own_and_the_azure_sdks_http_logs_are_never_exported(exported, name):
    logging.getLogger(name).error("Request URL: %s", MARKER)
    assert exported() == []


def test_exceptions_are_exported_with_type_and_frames_never_the_message(exported):
    exc = _raise_chain()
    logging.getLogger("api.jobs").error("export failed", exc_info=(type(exc), exc,
                                                                   exc.__traceback__))
    [record] = exported()
    attributes = dict(record.attributes)
    assert attributes["exception.type"] == "ValueError"
    assert "exception.message" not in attributes
    assert MARKER not in repr(attributes) and MARKER not in str(record.body)
    assert "_raise_chain" in attributes["exception.stacktrace"]


def test_flasks_unhandled_exception_line_names_the_route_not_the_path(exported):
    app = Flask("api")

    @app.get("/items/<token>")
    def item(token):
        raise RuntimeError(token)

    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert app.test_client().get(f"/items/{MARKER}").status_code == 500
    [record] = [r for r in exported() if r.attributes.get("exception.type")]
    assert record.body == "unhandled exception in GET /items/<token>"
    assert MARKER not in repr(dict(record.attributes))


# -- metrics ---------------------------------------------------------------------------


def test_every_metric_stays_within_application_insights_dimension_limit():
    metrics = telemetry.all_metrics()
    assert set(LLM_METRICS) <= set(metrics)
    assert {"clinai.llm.tokens", "clinai.llm.budget_refusals", "clinai.llm.errors",
            telemetry.HTTP_DURATION} <= set(metrics)
    assert all(0 < len(dims) <= telemetry.MAX_DIMENSIONS for dims in metrics.values())


def test_views_drop_other_metrics_and_undeclared_dimensions():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=telemetry.metric_views())
    meter = provider.get_meter("anything")
    meter.create_counter("http.server.active_requests").add(1, {"http.target": MARKER})
    meter.create_counter("clinai.llm.tokens").add(
        5, {"tenant_id": "t", "feature": "f", "deployment": "d", "kind": "prompt",
            "user_id": MARKER})
    data = reader.get_metrics_data()
    found = {m.name: [dict(p.attributes) for p in m.data.data_points]
             for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert set(found) == {"clinai.llm.tokens"}
    assert found["clinai.llm.tokens"] == [{"tenant_id": "t", "feature": "f",
                                           "deployment": "d", "kind": "prompt"}]
    provider.shutdown()


def points(reader, name: str) -> list:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for p in m.data.data_points]


def test_request_duration_per_route_template(app, make_practice, metric_reader):
    practice = make_practice()
    person = practice.create_client()
    response = practice.client.get(f"/api/v1/clients/{person['id']}",
                                   headers=practice.admin.headers)
    assert response.status_code == 200
    mine = [p for p in points(metric_reader, telemetry.HTTP_DURATION)
            if p.attributes["route"] == "/api/v1/clients/<uuid:client_id>"
            and p.attributes["status_code"] == "200"]
    assert mine and mine[0].count >= 1
    assert set(mine[0].attributes) == {"route", "method", "status_code"}


def _tokens_by_kind(reader, tenant_id) -> dict[str, int]:
    totals: dict[str, int] = {}
    for p in points(reader, "clinai.llm.tokens"):
        if p.attributes.get("tenant_id") == str(tenant_id):
            totals[p.attributes["kind"]] = totals.get(p.attributes["kind"], 0) + p.value
    return totals


def _ledger(admin_conn, tenant_id) -> dict[str, int]:
    row = admin_conn.execute(
        "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
        "coalesce(sum(cached_tokens), 0) FROM public.llm_usage WHERE tenant_id = %s",
        (tenant_id,)).fetchone()
    return dict(zip(("prompt", "completion", "cached"), (int(v) for v in row), strict=True))


def test_token_metric_adds_up_to_the_ledger(app, make_practice, metric_reader, admin_conn):
    practice = make_practice()
    c, h = practice.client, practice.admin.headers
    person = practice.create_client(first_name="Quentin", last_name="Quenstedt")
    session = c.post(f"/api/v1/clients/{person['id']}/sessions", headers=h, json={
        "started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
        "modality": "video", "transcript": TRANSCRIPT * 30}).json  # long: cached tokens
    for fmt in ("SOAP", "SOAP", "DAP"):
        assert c.post(f"/api/v1/sessions/{session['id']}/note-drafts", headers=h,
                      json={"format": fmt}).status_code == 201
    streamed = c.post(f"/api/v1/sessions/{session['id']}/note-drafts",
                      headers={**h, "Accept": "text/event-stream"}, json={"format": "BIRP"})
    assert streamed.status_code == 201
    conversation = c.post(f"/api/v1/clients/{person['id']}/conversations", headers=h).json
    assert c.post(f"/api/v1/conversations/{conversation['id']}/messages", headers=h,
                  json={"content": "How is he?"}).status_code == 201
    ledger = _ledger(admin_conn, practice.id)
    assert ledger["cached"] > 0 and ledger["completion"] > 0
    assert _tokens_by_kind(metric_reader, practice.id) == ledger


def test_budget_refusals_and_llm_errors_are_counted(app, make_practice, metric_reader):
    practice = make_practice()
    c, h = practice.client, practice.admin.headers
    person = practice.create_client()
    session = c.post(f"/api/v1/clients/{person['id']}/sessions", headers=h, json={
        "started_at": "2026-11-20T09:00:00+01:00", "duration_minutes": 50,
        "modality": "video", "transcript": TRANSCRIPT}).json
    simulator = app.extensions["clinai_llm_simulator"]
    simulator.inject(Fault("status", status=500))  # the first attempt fails, the retry not
    assert c.post(f"/api/v1/sessions/{session['id']}/note-drafts", headers=h,
                  json={"format": "SOAP"}).status_code == 201
    errors = [p for p in points(metric_reader, "clinai.llm.errors")
              if p.attributes["tenant_id"] == str(practice.id)]
    assert [(dict(p.attributes)["kind"], p.value) for p in errors] == [("server_error", 1)]
    assert dict(errors[0].attributes)["feature"] == "note_draft"

    result = app.test_cli_runner().invoke(args=["tenancy", "set-budget", str(practice.id),
                                                "--monthly-tokens", "1"])
    assert result.exit_code == 0, result.output
    refused = c.post(f"/api/v1/sessions/{session['id']}/note-drafts", headers=h,
                     json={"format": "SOAP"})
    assert refused.status_code == 429
    refusals = [dict(p.attributes) | {"n": p.value}
                for p in points(metric_reader, "clinai.llm.budget_refusals")
                if p.attributes["tenant_id"] == str(practice.id)]
    assert refusals == [{"tenant_id": str(practice.id), "feature": "note_draft",
                         "reason": "token_budget_exhausted", "n": 1}]


# -- settings and start-up -------------------------------------------------------------


def test_role_name_and_instance():
    assert settings.DEFAULTS["APPLICATIONINSIGHTS_ROLE_NAME"] == "clinai-api"
    attributes = telemetry.resource_attributes(settings.DEFAULTS)
    assert attributes["service.name"] == "clinai-api" and attributes["service.instance.id"]
    attributes = telemetry.resource_attributes({"APPLICATIONINSIGHTS_ROLE_NAME": "clinai-jobs",
                                                "APPLICATIONINSIGHTS_ROLE_INSTANCE": "w1"})
    assert (attributes["service.name"], attributes["service.instance.id"]) == ("clinai-jobs",
                                                                               "w1")


@pytest.mark.parametrize("value", ["0", "1.5", "-1", "half"])
def test_sampling_ratio_is_refused_outside_0_to_1(value):
    with pytest.raises(ConfigError, match="APPLICATIONINSIGHTS_SAMPLING_RATIO"):
        config = {**settings.DEFAULTS, "DATABASE_URL": "postgresql://x/y",
                  "APP_ENV": "development",
                  **settings.from_environment({"APPLICATIONINSIGHTS_SAMPLING_RATIO": value})}
        settings.validate(config)


def test_azure_sdk_loggers_are_held_at_warning(app):
    assert logging.getLogger("azure").getEffectiveLevel() >= logging.WARNING
    assert not logging.getLogger(
        "azure.core.pipeline.policies.http_logging_policy").isEnabledFor(logging.INFO)


def test_without_a_connection_string_nothing_is_configured(app):
    assert not app.config["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert telemetry.Pipeline.current() is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)

"""Application Insights through OpenTelemetry, built explicitly.

With ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set, one pipeline per process sends, through
azure-monitor-opentelemetry-exporter:

- requests: the Flask app object itself is instrumented (``instrument_app``; ``flask.Flask``
  is never replaced, so the ``flask`` CLI finds ``wsgi:app`` as before), named by method
  and route template, with status, request id and tenant id;
- dependencies: PostgreSQL (psycopg 3), Azure OpenAI (httpx2, the openai SDK's client),
  Blob Storage and Key Vault (azure-core tracing);
- traces and exceptions from ``logging``, with request id and tenant id;
- the custom metrics of ``METRICS``, each with at most ``MAX_DIMENSIONS`` dimensions.

What leaves the process is decided here, by allow-lists, not by each instrumentation's
defaults: span attributes (server URLs become route templates; no query strings, client
addresses or user agents; SQL without literals), no span events, exception types and
frames without messages, only our own loggers' messages, and per metric its dimensions.
docs/decisions/observability.md says what is exported and what never is.

The azure-monitor-opentelemetry distro is not used: it instruments by patching libraries
globally (it replaced ``flask.Flask`` after ``wsgi:app`` was built), has no seam to filter
what its exporters send, and its live metrics see spans and logs unfiltered.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, g, has_request_context, request
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status

from api.logs import request_fields

log = logging.getLogger(__name__)

DEFAULT_ROLE_NAME = "clinai-api"
# Application Insights keeps at most 10 custom dimensions per metric.
MAX_DIMENSIONS = 10

HTTP_DURATION = "clinai.http.server.duration"
# Every exported metric and its dimensions (the LLM gateway's are in llm.gateway.METRICS).
# Anything else a library records is dropped (a view), and dimensions not listed here are
# dropped from these.
HTTP_METRICS: dict[str, frozenset[str]] = {
    HTTP_DURATION: frozenset({"route", "method", "status_code"}),
}

_meter = metrics.get_meter("clinai.http")
_duration = _meter.create_histogram(
    HTTP_DURATION, unit="ms", description="Request duration per route template and status")


def all_metrics() -> dict[str, frozenset[str]]:
    from llm.gateway import METRICS as LLM_METRICS

    return {**HTTP_METRICS, **LLM_METRICS}


# -- the app ---------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Record the request-duration metric and name request spans; with a connection string,
    export everything to Application Insights."""
    # The Azure SDK logs every HTTP request and response (URLs, headers) at INFO; the
    # exporter logs each transmission. Held at WARNING, in the JSON logs too.
    logging.getLogger("azure").setLevel(max(logging.WARNING, _level(app.config["LOG_LEVEL"])))

    @app.after_request
    def _measure(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule else UNMATCHED
        fields = request_fields()
        span = trace.get_current_span()
        if span.is_recording():
            for key in ("request_id", "tenant_id"):
                if fields.get(key):
                    span.set_attribute(key, str(fields[key]))
        started = g.get("started")  # api.logs' clock of the request
        if started is not None:
            _duration.record((time.perf_counter() - started) * 1000, {
                "route": rule, "method": request.method,
                "status_code": str(response.status_code)})
        return response

    connection_string = app.config.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if connection_string:
        check_connection_string(connection_string)
        configure(app, connection_string)


_IKEY = re.compile(r"(?i)(?:^|;)\s*InstrumentationKey\s*=\s*"
                   r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\s*(?:;|$)")


def check_connection_string(value: str) -> None:
    """Refuse a connection string without a valid InstrumentationKey at start-up, with one
    line that does not repeat it (``ConfigError``), instead of the exporter's traceback."""
    from api.settings import ConfigError

    if not _IKEY.search(value):
        raise ConfigError("APPLICATIONINSIGHTS_CONNECTION_STRING has no valid "
                          "InstrumentationKey=<uuid> (copy it from the Application Insights "
                          "resource's overview)")


# The exporter's own calls elsewhere, off unless the environment turns them on ("false").
OUTBOUND_OFF = ("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
                "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
                "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED")


def _level(name: Any) -> int:
    level = logging.getLevelName(str(name).upper())
    return level if isinstance(level, int) else logging.INFO


def configure(app: Flask, connection_string: str) -> None:
    """Start the process's pipeline (once) and instrument this app object."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    pipeline = Pipeline.start(
        connection_string,
        resource_attributes(app.config),
        sampling_ratio=float(app.config.get("APPLICATIONINSIGHTS_SAMPLING_RATIO") or 1.0),
    )
    FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=pipeline.tracer_provider, meter_provider=pipeline.meter_provider,
        enable_commenter=False)
    root = logging.getLogger()
    if pipeline.log_handler not in root.handlers:  # api.logs resets root's handlers
        root.addHandler(pipeline.log_handler)


def resource_attributes(config: Mapping[str, Any]) -> dict[str, str]:
    """The cloud role (``service.name``) and role instance (``service.instance.id``)."""
    instance = (config.get("APPLICATIONINSIGHTS_ROLE_INSTANCE")
                or os.environ.get("WEBSITE_INSTANCE_ID")  # App Service's instance
                or platform.node())
    return {SERVICE_NAME: config.get("APPLICATIONINSIGHTS_ROLE_NAME") or DEFAULT_ROLE_NAME,
            SERVICE_INSTANCE_ID: instance}


class Pipeline:
    """The tracer, meter and logger providers and the instrumentations: OpenTelemetry's
    providers can be set once per process, so the first app configures them and later
    apps (tests, the CLI) only instrument themselves."""

    _current: Pipeline | None = None
    _lock = threading.Lock()

    def __init__(self, connection_string: str, attributes: Mapping[str, str], *,
                 sampling_ratio: float) -> None:
        from azure.monitor.opentelemetry.exporter import (
            ApplicationInsightsSampler,
            AzureMonitorLogExporter,
            AzureMonitorMetricExporter,
            AzureMonitorTraceExporter,
        )
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.resource.detector.azure.app_service import (
            AzureAppServiceResourceDetector,
        )
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.connection_string = connection_string
        for variable in OUTBOUND_OFF:
            # Only the resource of the connection string receives telemetry: no SDK
            # statistics ("statsbeat") to Microsoft, no remote configuration fetched.
            os.environ.setdefault(variable, "true")
        # App Service's attributes (region, slot, stamp) under ours; no VM metadata probe.
        detected = dict(AzureAppServiceResourceDetector().detect().attributes)
        self.resource = Resource.create({**detected, **attributes})
        options: dict[str, Any] = {"connection_string": connection_string}

        self.tracer_provider = TracerProvider(
            resource=self.resource,
            sampler=ApplicationInsightsSampler(sampling_ratio=sampling_ratio))
        self.span_exporter = ScrubbingSpanExporter(AzureMonitorTraceExporter(**options))
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.span_exporter))

        self.metric_reader = PeriodicExportingMetricReader(
            AzureMonitorMetricExporter(**options))
        self.meter_provider = MeterProvider(resource=self.resource,
                                            metric_readers=[self.metric_reader],
                                            views=metric_views())

        self.logger_provider = LoggerProvider(resource=self.resource)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(AzureMonitorLogExporter(**options)))
        self.log_handler = ExportHandler(logger_provider=self.logger_provider)

        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        set_logger_provider(self.logger_provider)
        self._instrument_libraries()

    def _instrument_libraries(self) -> None:
        from azure.core.settings import settings
        from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        providers = {"tracer_provider": self.tracer_provider,
                     "meter_provider": self.meter_provider}
        # Statement text only: parameters are never captured, no comments are added.
        PsycopgInstrumentor().instrument(**providers, capture_parameters=False,
                                         enable_commenter=False)
        HTTPX2ClientInstrumentor().instrument(**providers)
        settings.tracing_implementation = OpenTelemetrySpan

    @classmethod
    def start(cls, connection_string: str, attributes: Mapping[str, str], *,
              sampling_ratio: float = 1.0) -> Pipeline:
        with cls._lock:
            if cls._current is None:
                cls._current = cls(connection_string, attributes,
                                   sampling_ratio=sampling_ratio)
            elif cls._current.connection_string != connection_string:
                log.warning("telemetry already goes to another Application Insights "
                            "resource in this process; the new connection string is ignored")
            return cls._current

    @classmethod
    def current(cls) -> Pipeline | None:
        return cls._current

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export everything recorded so far (tests, and before a CLI process exits)."""
        self.tracer_provider.force_flush(timeout_millis)
        self.logger_provider.force_flush(timeout_millis)
        self.meter_provider.force_flush(timeout_millis)


def metric_views() -> list[Any]:
    """Drop every metric but ours; keep only each metric's own dimensions."""
    from opentelemetry.sdk.metrics.view import DropAggregation, View

    views = [View(instrument_name="*", aggregation=DropAggregation())]
    for name, dimensions in all_metrics().items():
        views.append(View(instrument_name=name, attribute_keys=set(dimensions)))
    return views


# -- spans: what a request or dependency may say ---------------------------------------

# Attributes exported as they are; everything else is dropped.
_SPAN_KEYS = frozenset({
    # HTTP, both generations of the semantic conventions
    "http.request.method", "http.method", "http.response.status_code", "http.status_code",
    "http.route", "url.scheme", "http.scheme", "server.address", "server.port",
    "http.host", "http.server_name", "net.host.name", "net.host.port", "net.peer.name",
    "net.peer.port", "network.protocol.version", "http.flavor", "error.type",
    # databases
    "db.system", "db.system.name", "db.name", "db.namespace", "db.user", "db.operation",
    "db.operation.name",
    # Azure SDK (Blob, Key Vault)
    "az.namespace", "az.client_request_id", "az.service_request_id",
    # ours (api.logs)
    "request_id", "tenant_id",
})
_STATEMENT_KEYS = frozenset({"db.statement", "db.query.text"})
_URL_KEYS = frozenset({"http.url", "url.full"})
_SERVER_PATH_KEYS = frozenset({"http.target", "url.path"})
UNMATCHED = "/(unmatched)"

# SQL string literals ('...', E'...', with '' escapes) and dollar-quoted strings.
_SQL_LITERAL = re.compile(r"(?:\b[EeBbXxNn]|\b[Uu]&)?'(?:[^']|'')*'|\$(\w*)\$.*?\$\1\$",
                          re.DOTALL)


def strip_sql_literals(statement: str) -> str:
    """The statement with every string literal replaced by ``?`` (values are bound as
    parameters, which are never captured; this catches any that were inlined)."""
    return _SQL_LITERAL.sub("?", statement)


def _client_url(url: str) -> str:
    """A dependency's URL without credentials, query string or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` with only the attributes that may leave the process."""
    source = dict(span.attributes or {})
    server = span.kind in (SpanKind.SERVER, SpanKind.CONSUMER)
    attributes: dict[str, Any] = {}
    for key, value in source.items():
        if key in _SPAN_KEYS or key.startswith("_MS."):  # _MS.*: the sampler's bookkeeping
            attributes[key] = value
        elif key in _STATEMENT_KEYS and isinstance(value, str):
            attributes[key] = strip_sql_literals(value)
        elif key in _URL_KEYS and isinstance(value, str) and not server:
            attributes[key] = _client_url(value)
        elif key == "url.path" and not server:
            attributes[key] = value
    name = span.name
    if server:
        # The route template instead of the path: record ids, download tokens and
        # invitation codes stay out; the query string is never sent.
        route = source.get("http.route")
        path = str(route) if route else UNMATCHED
        attributes["url.path"] = path
        method = source.get("http.request.method") or source.get("http.method") or "HTTP"
        name = f"{method} {path}"
        scheme = source.get("url.scheme") or source.get("http.scheme")
        host = source.get("server.address") or source.get("http.host")
        if scheme and host:
            port = source.get("server.port")
            netloc = f"{host}:{port}" if port and ":" not in str(host) else str(host)
            attributes["url.full"] = f"{scheme}://{netloc}{path}"
    # Events (exception messages and stack traces, which quote values) are not exported:
    # exceptions reach Application Insights through logging (ExportHandler), scrubbed.
    # The status keeps its code, not its description (the exception's message).
    return ReadableSpan(  # the documented way for an exporter to pass on a changed span
        name=name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=attributes, events=(), links=span.links, kind=span.kind,
        status=Status(span.status.status_code), start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope)


class ScrubbingSpanExporter(SpanExporter):
    """Passes each span through ``scrub_span`` to the wrapped exporter."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([scrub_span(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


# -- logs: which records, with what ----------------------------------------------------

# Our loggers: their messages follow api.logs' rule (no PII, no clinical text).
OWN_LOGGERS = ("api", "llm", "tenancy", "storage", "models", "clinai")
# Never exported: the pipeline's own logs (exporting them would feed themselves), the
# Azure SDK's HTTP logging, and the access lines (the request telemetry says it all).
SILENT_LOGGERS = ("opentelemetry", "azure.monitor", "azure.core.pipeline", "clinai.access")
# Fields of a record that may be exported (api.logs' fields).
_LOG_FIELDS = ("method", "route", "status", "duration_ms", "error")


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def scrubbed_stack(exc: BaseException) -> str:
    """The exception chain's types and frames (file, line, function, source line): no
    messages, which can quote values."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    parts: list[str] = []
    for position, item in enumerate(reversed(chain)):
        if position:
            parts.append("\nwhich led to:\n\n")
        parts.append("Traceback (most recent call last):\n")
        tb: TracebackType | None = item.__traceback__
        for frame in traceback.extract_tb(tb):
            parts.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
            if frame.line:
                parts.append(f"    {frame.line.strip()}\n")
        parts.append(f"{_type_name(type(item))}\n")
    return "".join(parts)


def _type_name(cls: type) -> str:
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


class ExportHandler(LoggingHandler):
    """The OpenTelemetry logging handler, fed a scrubbed copy of each record.

    Exported: records of our loggers at the configured level, other loggers' from WARNING,
    never the pipeline's own or the Azure SDK's HTTP logging. A copy carries the message
    (ours verbatim; another library's only as its format string, without the arguments),
    the request id and tenant id, api.logs' fields, and for an exception its type and
    ``scrubbed_stack`` (never its message).
    """

    def emit(self, record: logging.LogRecord) -> None:
        if _under(record.name, SILENT_LOGGERS):
            return
        own = _under(record.name, OWN_LOGGERS)
        if not own and record.levelno < logging.WARNING:
            return
        fields: dict[str, Any] = {
            "name": record.name, "levelno": record.levelno, "levelname": record.levelname,
            "msg": self._message(record, own), "args": None, "exc_info": None,
            "created": record.created, "msecs": record.msecs,
            "relativeCreated": record.relativeCreated, "thread": record.thread,
            "threadName": record.threadName, "process": record.process,
            "processName": record.processName, "pathname": record.pathname,
            "filename": record.filename, "module": record.module, "lineno": record.lineno,
            "funcName": record.funcName,
        }
        context = request_fields()
        for key in ("request_id", "tenant_id"):
            value = record.__dict__.get(key) or context.get(key)
            if value:
                fields[key] = str(value)
        for key in _LOG_FIELDS:
            if own and record.__dict__.get(key) is not None:
                fields[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["exception.type"] = _type_name(type(exc))
            fields["exception.stacktrace"] = scrubbed_stack(exc)
        super().emit(logging.makeLogRecord(fields))

    @staticmethod
    def _message(record: logging.LogRecord, own: bool) -> str:
        if record.funcName == "log_exception" and str(record.msg).startswith("Exception on "):
            # Flask's line for an unhandled exception (on the app's logger, named after the
            # app: "api") quotes the request path: say the route instead.
            route = UNMATCHED
            method = "HTTP"
            if has_request_context():
                method = request.method
                route = request.url_rule.rule if request.url_rule else UNMATCHED
            return f"unhandled exception in {method} {route}"
        if own:
            return record.getMessage()
        return str(record.msg)  # a library's format string, never its arguments

"""Application Insights through OpenTelemetry (azure-monitor-opentelemetry)."""

from __future__ import annotations

from flask import Flask


def configure_azure_monitor_for(app: Flask) -> None:
    """Export traces, metrics and logs when APPLICATIONINSIGHTS_CONNECTION_STRING is set."""
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        connection_string=app.config["APPLICATIONINSIGHTS_CONNECTION_STRING"],
        # Request URLs carry record ids, never names; bodies are never captured.
        instrumentation_options={"flask": {"enabled": True}, "psycopg": {"enabled": True}},
    )

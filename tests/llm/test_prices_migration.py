"""Public migration 0008 on a ledger that already has rows: they stay USD, as rated.

A scratch database of its own (the run's database is at head and shared by the other
tests), migrated to 0007, given a legacy row, then upgraded to head and back down.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tenancy.migrate import PUBLIC_SCRIPTS, _config
from tests.conftest import RUN_ID, _conninfo


@pytest.fixture
def scratch_url(database_url: str) -> Any:
    name = f"clinai_test_{RUN_ID}_m8"
    with psycopg.connect(_conninfo(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_conninfo(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str, direction: str, revision: str) -> None:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"),
                           poolclass=NullPool)
    try:
        with engine.begin() as conn:
            cfg = _config(PUBLIC_SCRIPTS)
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
    finally:
        engine.dispose()


def test_existing_ledger_rows_keep_their_usd_cost_as_legacy(scratch_url):
    migrate(scratch_url, "upgrade", "0007_data_lifecycle")
    tenant = uuid.uuid4()
    with psycopg.connect(_conninfo(scratch_url), autocommit=True) as conn:
        conn.execute("INSERT INTO public.tenants (id, name, schema_name) "
                     "VALUES (%s, 'Praxis Alt', %s)", (tenant, f"t_{tenant.hex}"))
        conn.execute(
            "INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, "
            "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, "
            "latency_ms, attempts, status, usage_source) VALUES (%s, 'u', 'note_draft', "
            "'gpt-4o-mini', 1000, 200, 0, 0, 0.00027000, 5, 1, 'ok', 'provider')", (tenant,))
    migrate(scratch_url, "upgrade", "head")
    with psycopg.connect(_conninfo(scratch_url), autocommit=True) as conn:
        row = conn.execute("SELECT cost, price_version, currency, artifact_kind, artifact_id "
                           "FROM public.llm_usage").fetchone()
        assert row == (Decimal("0.00027000"), "legacy-usd", "USD", None, None)
        nullable = dict(conn.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'llm_usage' "
            "AND column_name IN ('price_version', 'currency', 'artifact_kind', "
            "'artifact_id')").fetchall())
        assert nullable == {"price_version": "NO", "currency": "NO", "artifact_kind": "YES",
                            "artifact_id": "YES"}
    migrate(scratch_url, "downgrade", "0007_data_lifecycle")
    with psycopg.connect(_conninfo(scratch_url), autocommit=True) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'llm_usage'")}
        assert not columns & {"price_version", "currency", "artifact_kind", "artifact_id"}
        assert conn.execute("SELECT cost FROM public.llm_usage").fetchone() == (
            Decimal("0.00027000"),)


def test_existing_ledger_rows_get_their_month_from_when_they_were_metered(scratch_url):
    migrate(scratch_url, "upgrade", "0009_billing_summary")
    tenant = uuid.uuid4()
    with psycopg.connect(_conninfo(scratch_url), autocommit=True) as conn:
        for created in ("2026-10-31T23:59:59Z", "2026-11-01T00:00:00Z"):
            conn.execute(
                "INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, "
                "prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, "
                "latency_ms, attempts, status, usage_source, price_version, currency, "
                "created_at) VALUES (%s, 'u', 'note_draft', 'gpt-4o-mini', 1000, 200, 0, 0, "
                "0.00027000, 5, 1, 'ok', 'provider', 'v1', 'EUR', %s)", (tenant, created))
    migrate(scratch_url, "upgrade", "head")
    with psycopg.connect(_conninfo(scratch_url), autocommit=True) as conn:
        rows = conn.execute("SELECT started_at = created_at, billing_period "
                            "FROM public.llm_usage ORDER BY created_at").fetchall()
        assert rows == [(True, "2026-10"), (True, "2026-11")]
        assert conn.execute(
            "SELECT count(*) FROM public.billing_usage_summary('2026-10')").fetchone() == (1,)
    migrate(scratch_url, "downgrade", "0009_billing_summary")
    with psycopg.connect(_conninfo(scratch_url), autocommit=True) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'llm_usage'")}
        assert not columns & {"started_at", "billing_period"}
        assert conn.execute(
            "SELECT requests FROM public.billing_usage_summary("
            "'2026-10-01T00:00:00Z', '2026-11-01T00:00:00Z')").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('public.billing_periods')").fetchone() == (
            None,)

"""Erasure of a large client, its locks, and offboarding of a large practice.

In a throw-away database:

1. **Erasure**: a practice with ``--neighbours`` clients (10 sessions and notes each) and,
   per run, one client with ``--sessions`` sessions and as many signed notes (transcripts
   of about 2 KB), every record named by audit events, treatment ended long ago. Times
   ``DELETE /api/v1/clients/{id}`` through the app (the admin's real request: tenant
   entry, confirmation, retention check, cascade, tombstone, audit re-pointing, commit);
   median of ``--runs``. Target: <= 2 s for 1,000 sessions and 1,000 notes.
2. **Locks**: the same erasure, held open before its commit, while a second connection
   (as the app role, in the tenant's context) locks and updates another client's row,
   sessions and notes with ``lock_timeout = 200ms``: it must not wait.
3. **Offboarding**: a second practice with ``--practice-clients`` clients (one session and
   note each, their audit trail) and a few export files; times
   ``tenancy.offboarding.erase_tenant`` (close, delete files, drop the schema and the
   practice's rows). Target: <= 60 s for 10,000 clients.

    .venv/bin/python -m bench.lifecycle [--sessions 1000] [--runs 3] [--practice-clients 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from api import create_app
from api.clients.erasure import ErasureRequest, erase_client
from api.gdpr import platform_session
from api.storage import EXTENSION as STORAGE_EXTENSION
from bench._db import BenchDatabase, bench_database, default_server_url, watchdog
from bench._seed import seed_clients
from models import Client
from storage.base import Storage, tenant_container
from tenancy.actor import Actor
from tenancy.context import enter_as_platform
from tenancy.offboarding import erase_tenant
from tenancy.provisioning import create_tenant
from tenancy.security import schema_name

ADMIN = "bench-lifecycle-admin"
ENDED = "2010-03-31"  # retention ended in 2020


def _app(bench: BenchDatabase, storage_root: str) -> Flask:
    app = create_app({**bench.app_settings(), "STORAGE_LOCAL_ROOT": storage_root})
    result = app.test_cli_runner().invoke(args=["tenancy", "upgrade"])
    assert result.exit_code == 0, result.output
    return app


def _token(app: Flask, tenant_id: uuid.UUID, subject: str) -> str:
    token: str = app.extensions["clinai_dev_issuer"].mint(
        subject=subject, tenant=str(tenant_id), role="admin",
        tenant_claim=app.config["AUTH_TENANT_CLAIM"], role_claim=app.config["AUTH_ROLE_CLAIM"])
    return token


def _seed(owner: Engine, tenant_id: uuid.UUID, count: int, sessions_each: int,
          prefix: str) -> list[uuid.UUID]:
    with owner.begin() as conn:
        enter_as_platform(conn, tenant_id)
        ids = seed_clients(conn, tenant_id, count, sessions_each=sessions_each, prefix=prefix)
        conn.execute(text("UPDATE clients SET treatment_ended_on = :d, status = 'discharged' "
                          "WHERE id = ANY(:ids)"), {"d": ENDED, "ids": ids})
    with owner.begin() as conn:
        conn.execute(text(f"ANALYZE {schema_name(tenant_id)}.therapy_sessions"))
        conn.execute(text(f"ANALYZE {schema_name(tenant_id)}.notes"))
        conn.execute(text(f"ANALYZE {schema_name(tenant_id)}.audit_events"))
    return ids


def _erasures(app: Flask, owner: Engine, tenant_id: uuid.UUID, sessions: int,
              runs: int) -> list[float]:
    http = app.test_client()
    headers = {"Authorization": f"Bearer {_token(app, tenant_id, ADMIN)}"}
    times = []
    for run in range(runs):
        (client_id,) = _seed(owner, tenant_id, 1, sessions, f"Gross{run}")
        started = time.perf_counter()
        response = http.delete(f"/api/v1/clients/{client_id}", headers=headers,
                               json={"confirm": str(client_id)})
        times.append(time.perf_counter() - started)
        body: Any = response.get_json()
        assert response.status_code == 200, body
        print(f"  run {run + 1}: {times[-1]:.3f} s, {body['record_counts']['therapy_sessions']}"
              f" sessions, {body['record_counts']['notes']} notes, "
              f"{body['events_repointed']} audit events re-pointed")
    return times


def _lock_probe(app: Flask, owner: Engine, tenant_id: uuid.UUID, neighbour: uuid.UUID,
                sessions: int) -> dict[str, Any]:
    """Hold an erasure open before its commit; lock another client's rows meanwhile."""
    (client_id,) = _seed(owner, tenant_id, 1, sessions, "Sperre")
    app_engine = app.extensions["clinai_db"].engine
    store: Storage = app.extensions[STORAGE_EXTENSION]
    outcome: dict[str, Any] = {}
    actor = Actor(tenant_id=tenant_id, user_id=ADMIN, role="admin")
    with app.app_context(), platform_session(owner, tenant_id) as db:
        client = db.get(Client, client_id)
        assert client is not None
        erase_client(db, actor, client, ErasureRequest(
            confirm=str(client_id), override_retention=None,
            today=dt.datetime.now(dt.UTC).date(), retention_years=10), store)
        with app_engine.connect() as other:
            other.execute(text("BEGIN"))
            other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            other.execute(text("SELECT set_config('app.tenant_id', :t, true), "
                               "set_config('search_path', :s, true)"),
                          {"t": str(tenant_id), "s": f"{schema_name(tenant_id)}, public"})
            started = time.perf_counter()
            locked = other.execute(text("SELECT id FROM clients WHERE id = :c FOR UPDATE"),
                                   {"c": neighbour}).all()
            updated = other.execute(text(
                "UPDATE therapy_sessions SET duration_minutes = duration_minutes "
                "WHERE client_id = :c"), {"c": neighbour}).rowcount
            notes = other.execute(text(
                "UPDATE notes SET updated_at = now() WHERE session_id IN "
                "(SELECT id FROM therapy_sessions WHERE client_id = :c)"),
                {"c": neighbour}).rowcount
            outcome = {"neighbour_rows_locked": len(locked), "sessions_updated": updated,
                       "notes_updated": notes,
                       "wait_ms": round((time.perf_counter() - started) * 1000, 1)}
            # The control: the erased client's own rows are locked (the probe can fail).
            other.execute(text("SAVEPOINT control"))
            try:
                other.execute(text("SELECT id FROM clients WHERE id = :c FOR UPDATE"),
                              {"c": client_id})
                outcome["erased_client_locked"] = False
            except OperationalError:
                outcome["erased_client_locked"] = True
                other.execute(text("ROLLBACK TO SAVEPOINT control"))
            other.execute(text("ROLLBACK"))
    return outcome


def _offboarding(app: Flask, owner: Engine, count: int) -> dict[str, Any]:
    tenant = create_tenant(owner, name="Bench Abschied", admin_user_id=f"{ADMIN}-2",
                           app_role=app.config["DATABASE_APP_ROLE"])
    started = time.perf_counter()
    for start in range(0, count, 2000):
        _seed(owner, tenant.id, min(2000, count - start), 1, f"P{start}")
    seeded = time.perf_counter() - started
    store: Storage = app.extensions[STORAGE_EXTENSION]
    for i in range(5):
        store.put(tenant_container(tenant.id), f"exports/bench-{i}.zip", b"PK" * 50_000)
    with owner.connect() as conn:
        size = conn.scalar(text("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                "WHERE n.nspname = :s"), {"s": schema_name(tenant.id)})
    started = time.perf_counter()
    outcome = erase_tenant(owner, store, tenant.id)
    took = time.perf_counter() - started
    return {"clients": count, "seed_s": round(seeded, 1),
            "schema_mb": round(float(size) / 2**20, 1),
            "files_deleted": outcome.blobs_deleted, "offboarding_s": round(took, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=default_server_url())
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=200)
    parser.add_argument("--practice-clients", type=int, default=10_000)
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with watchdog(args.timeout), bench_database(args.database_url) as bench, \
            tempfile.TemporaryDirectory(prefix="clinai-bench-storage-") as storage_root:
        app = _app(bench, storage_root)
        owner = app.extensions["clinai_db"].owner_engine
        try:
            tenant = create_tenant(owner, name="Bench Loeschung", admin_user_id=ADMIN,
                                   app_role=app.config["DATABASE_APP_ROLE"])
            neighbours = _seed(owner, tenant.id, args.neighbours, 10, "Nachbar")
            print(f"erasure of one client with {args.sessions} sessions and notes "
                  f"({args.neighbours} neighbours with 10 each):")
            times = _erasures(app, owner, tenant.id, args.sessions, args.runs)
            results["erasure_s_median"] = round(statistics.median(times), 3)
            results["erasure_s_max"] = round(max(times), 3)
            print(f"erasure: median {results['erasure_s_median']} s, "
                  f"max {results['erasure_s_max']} s (target <= 2 s)")
            results["locks"] = _lock_probe(app, owner, tenant.id, neighbours[0], args.sessions)
            print(f"another client's rows during an open erasure: {results['locks']}")
            if args.practice_clients:
                results["offboarding"] = _offboarding(app, owner, args.practice_clients)
                print(f"offboarding: {results['offboarding']} (target <= 60 s)")
            left = sum(1 for _ in Path(storage_root).rglob("*") if _.is_file())
            results["files_left"] = left
        finally:
            app.extensions["clinai_db"].dispose()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Data export time: one client with 1,000 sessions and 1,000 notes, end to end.

In a throw-away database, seeds one client with ``--sessions`` sessions (transcripts of
about 2 KB) and as many notes (every tenth signed and amended), plus an audit trail of
their creation, by bulk SQL in the tenant's context as the app role. Then runs the
export job synchronously (``api.exports.jobs.run_export``: read under row-level security,
ZIP into a temporary file, upload to a local storage backend, row marked ready), timing
job start to ready; median of ``--runs``. Target: <= 5 s. With ``--practice-clients N``
it also times one practice export of N more clients (two sessions and notes each) and
prints the process's peak memory.

    .venv/bin/python -m bench.export [--sessions 1000] [--runs 5] [--practice-clients 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session, sessionmaker

from api.exports.jobs import ExportJob, run_export
from bench._db import bench_database, default_server_url, watchdog
from models import AuditEvent, Client, DataExport, Note, NoteAmendment, TherapySession
from storage.local import DownloadSigner, LocalStorage
from tenancy.actor import Actor
from tenancy.context import install, open_session
from tenancy.database import create_app_engine, create_owner_engine
from tenancy.provisioning import create_tenant

ADMIN = "bench-export-admin"
WORDS = ("schläft", "besser", "Angst", "Büro", "Woche", "Gespräch", "Schwester", "Atmung",
         "Übung", "Termin", "Stimmung", "Appetit", "Arbeit", "Familie", "Ziel", "Schritt")


def _transcript(rng: random.Random, size: int = 2000) -> str:
    lines, length = [], 0
    while length < size:
        line = ("T: " if len(lines) % 2 == 0 else "C: ") + " ".join(
            rng.choice(WORDS) for _ in range(12)) + "."
        lines.append(line)
        length += len(line) + 1
    return "\n".join(lines)


def _seed_client(db: Session, actor: Actor, sessions: int, rng: random.Random) -> uuid.UUID:
    """One client, ``sessions`` sessions with one note each, their audit trail."""
    client_id = uuid.uuid4()
    db.execute(insert(Client), [{"id": client_id, "first_name": "Bench", "last_name":
                                 f"Klient {client_id.hex[:6]}", "contact": {
                                     "email": "bench@example.org"},
                                 "assigned_therapist_id": actor.user_id}])
    start = dt.datetime(2020, 1, 6, 9, tzinfo=dt.UTC)
    session_rows = [{"id": uuid.uuid4(), "client_id": client_id,
                     "started_at": start + dt.timedelta(days=7 * i), "duration_minutes": 50,
                     "modality": "in_person", "transcript": _transcript(rng)}
                    for i in range(sessions)]
    note_rows = [{"id": uuid.uuid4(), "session_id": s["id"], "format": "SOAP",
                  "content": {"subjective": s["transcript"][:300], "objective": "ruhig",
                              "assessment": "stabil", "plan": "weiter wie besprochen"},
                  "status": "signed" if i % 10 == 0 else "draft",
                  "source": "ai" if i % 3 == 0 else "manual", "author_id": actor.user_id,
                  "signed_by": actor.user_id if i % 10 == 0 else None,
                  "signed_at": s["started_at"] if i % 10 == 0 else None}
                 for i, s in enumerate(session_rows)]
    if session_rows:
        db.execute(insert(TherapySession), session_rows)
        db.execute(insert(Note), note_rows)
        db.execute(insert(NoteAmendment), [
            {"note_id": n["id"], "content": {"plan": "korrigiert"}, "reason": "Korrektur",
             "author_id": actor.user_id} for n in note_rows if n["status"] == "signed"])
    # The audit trail: one create per record, one read of the client per session.
    # (As the owner would; the app role may not choose the time, only insert these.)
    events = [{"actor_id": actor.user_id, "actor_role": "admin", "action": action,
               "resource_type": kind, "resource_ids": [rid]}
              for rows, action, kind in ((session_rows, "session.create", "therapy_session"),
                                         (note_rows, "note.create", "note"))
              for rid in (r["id"] for r in rows)]
    events += [{"actor_id": actor.user_id, "actor_role": "admin", "action": "client.read",
                "resource_type": "client", "resource_ids": [client_id]}] * max(sessions, 1)
    db.execute(insert(AuditEvent), events)
    return client_id


def _analyze(owner: Engine, tenant_id: uuid.UUID) -> None:
    """As autovacuum would after a bulk load: fresh statistics for the planner."""
    with owner.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("clients", "therapy_sessions", "notes", "note_amendments",
                      "audit_events"):
            auto.exec_driver_sql(f'ANALYZE "t_{tenant_id.hex}".{table}')


def _pending(factory: sessionmaker[Session], actor: Actor, kind: str,
             client_id: uuid.UUID | None) -> uuid.UUID:
    db, _ = open_session(factory, actor.tenant_id, actor.user_id)
    try:
        export = DataExport(kind=kind, client_id=client_id, requested_by=actor.user_id,
                            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
        db.add(export)
        db.commit()
        return export.id
    finally:
        db.close()


def _row(factory: sessionmaker[Session], actor: Actor, export_id: uuid.UUID) -> Any:
    db, _ = open_session(factory, actor.tenant_id, actor.user_id)
    try:
        return db.get(DataExport, export_id)
    finally:
        db.close()


def _timed(factory: sessionmaker[Session], actor: Actor, storage: LocalStorage, kind: str,
           client_id: uuid.UUID | None) -> tuple[float, int]:
    export_id = _pending(factory, actor, kind, client_id)
    job = ExportJob(export_id=export_id, actor=actor, sessions=factory, storage=storage,
                    record_retention_years=10)
    started = time.perf_counter()
    status = run_export(job)
    elapsed = time.perf_counter() - started
    row = _row(factory, actor, export_id)
    if status != "ready":
        raise SystemExit(f"export ended {status} ({row.error})")
    return elapsed, int(row.size_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=default_server_url())
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--practice-clients", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args(argv)
    rng = random.Random(11)
    results: dict[str, Any] = {"benchmark": "export", "sessions": args.sessions,
                               "runs": args.runs}
    with (watchdog(args.timeout) as deadline, bench_database(args.database_url) as bench,
          tempfile.TemporaryDirectory(prefix="clinai-bench-export-") as root):
        config = bench.config()
        owner = create_owner_engine(config)
        engine = create_app_engine(config, pool_size=2)
        factory = sessionmaker(engine, expire_on_commit=False)
        install(factory)
        storage = LocalStorage(Path(root), DownloadSigner(b"k" * 32))
        try:
            tenant = create_tenant(owner, name="Bench export", admin_user_id=ADMIN,
                                   app_role=bench.app_role)
            db, actor = open_session(factory, tenant.id, ADMIN)
            seeded = time.perf_counter()
            client_id = _seed_client(db, actor, args.sessions, rng)
            db.commit()
            db.close()
            _analyze(owner, tenant.id)
            print(f"seeded 1 client, {args.sessions} sessions and notes in "
                  f"{time.perf_counter() - seeded:.1f} s")
            timings, size = [], 0
            for _ in range(args.runs):
                deadline.check()
                elapsed, size = _timed(factory, actor, storage, "client", client_id)
                timings.append(elapsed)
                print(f"  client export: {elapsed:6.3f} s, ZIP {size / 1e6:.2f} MB")
            results["client"] = {"median_s": round(statistics.median(timings), 3),
                                 "min_s": round(min(timings), 3),
                                 "max_s": round(max(timings), 3), "zip_bytes": size}
            print(f"client export median {results['client']['median_s']:.3f} s "
                  f"(min {min(timings):.3f}, max {max(timings):.3f}), ZIP {size:,} bytes")
            if args.practice_clients:
                db, actor = open_session(factory, tenant.id, ADMIN)
                seeded = time.perf_counter()
                for i in range(args.practice_clients):
                    _seed_client(db, actor, 2, rng)
                    if i % 500 == 499:
                        db.commit()
                db.commit()
                db.close()
                _analyze(owner, tenant.id)
                print(f"seeded {args.practice_clients} more clients in "
                      f"{time.perf_counter() - seeded:.1f} s")
                deadline.check()
                elapsed, size = _timed(factory, actor, storage, "practice", None)
                peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                results["practice"] = {"clients": args.practice_clients + 1,
                                       "seconds": round(elapsed, 2), "zip_bytes": size,
                                       "peak_rss_mb": round(peak_mb)}
                print(f"practice export of {args.practice_clients + 1} clients: "
                      f"{elapsed:.1f} s, ZIP {size / 1e6:.1f} MB, peak RSS {peak_mb:.0f} MB")
        finally:
            engine.dispose()
            owner.dispose()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

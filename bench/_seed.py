"""Bulk seeding of clinical records for the data-lifecycle benchmarks.

Rows go in with multi-row INSERTs as the database owner in the tenant's context
(``tenancy.context.enter_as_platform``), so row-level security and the tenant pins apply
as for any write; the ORM's per-row hooks (identity keys) are skipped where the benchmark
does not need them. Texts are fixed pseudo-clinical filler, never real data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Connection, insert

from models import AuditEvent, Client, Note, TherapySession

FILLER = ("T: How was the week? C: Better than the last one; I slept through most nights "
          "and went for a walk every morning. T: What made the difference? ")
START = dt.datetime(2024, 1, 8, 9, 0, tzinfo=dt.UTC)


def _transcript(chars: int) -> str:
    return (FILLER * (chars // len(FILLER) + 1))[:chars]


def seed_clients(conn: Connection, tenant_id: uuid.UUID, count: int, *,
                 sessions_each: int, transcript_chars: int = 2000,
                 audit_each: int = 1, prefix: str = "Bench") -> list[uuid.UUID]:
    """``count`` clients, each with ``sessions_each`` sessions of one signed note each,
    and ``audit_each`` audit events naming every record (the reads and writes a real
    record collects). Return the client ids."""
    ids = [uuid.uuid4() for _ in range(count)]
    conn.execute(insert(Client), [
        {"id": cid, "tenant_id": tenant_id, "first_name": f"{prefix}{i}",
         "last_name": f"Klient{i}", "contact": {}, "status": "active"}
        for i, cid in enumerate(ids)])
    text = _transcript(transcript_chars)
    sessions: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for cid in ids:
        for n in range(sessions_each):
            sid, nid = uuid.uuid4(), uuid.uuid4()
            sessions.append({"id": sid, "tenant_id": tenant_id, "client_id": cid,
                             "started_at": START + dt.timedelta(days=7 * n),
                             "duration_minutes": 50, "modality": "in_person",
                             "transcript": text})
            notes.append({"id": nid, "tenant_id": tenant_id, "session_id": sid,
                          "format": "SOAP", "status": "signed", "source": "manual",
                          "author_id": "bench-therapist", "signed_by": "bench-therapist",
                          "signed_at": START,
                          "content": {"subjective": text[:400], "objective": "Calm.",
                                      "assessment": "Improving.", "plan": "Continue."}})
            events += [{"actor_id": "bench-therapist", "actor_role": "therapist",
                        "action": action, "resource_type": kind, "resource_ids": [rid]}
                       for _ in range(audit_each)
                       for action, kind, rid in (("session.read", "therapy_session", sid),
                                                 ("note.read", "note", nid))]
        events.append({"actor_id": "bench-therapist", "actor_role": "therapist",
                       "action": "client.read", "resource_type": "client",
                       "resource_ids": [cid]})
    for table, rows in ((TherapySession, sessions), (Note, notes), (AuditEvent, events)):
        for start in range(0, len(rows), 5000):
            conn.execute(insert(table), rows[start:start + 5000])
    return ids

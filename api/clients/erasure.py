"""Erasure of a client (GDPR Art. 17) within the limits of the duty to keep records.

Art. 17(3)(b) GDPR with § 35(3) BDSG: while a legal duty to keep the treatment record
runs (§ 630f(3) BGB: 10 years after the treatment ended), the record is restricted
(Art. 18), not erased. ``erase_client`` enforces that and, when erasure is allowed,
removes the client and everything derived from them in one transaction:

1. the client's exports (and, because they hold every client, the practice's exports)
   are deleted from storage first, each retried until it is gone; if storage stays
   down, nothing else happens (503) and the request can be repeated;
2. a tombstone is written: when, by whom, why, how many records of each kind; never the
   client's id or any personal data;
3. the client row is deleted; sessions (with transcripts), notes, their amendments,
   consents, conversations and messages, exports and identity keys follow by the
   foreign keys' ``ON DELETE CASCADE`` (only this client's rows are locked);
4. audit and security events that named the client's record ids are re-pointed to the
   tombstone by ``public.repoint_erased_records`` (the app role cannot update audit rows;
   public migration 0007), and so are the audit events this request has not written yet.

The usage ledger (``public.llm_usage``) has no client reference and stays for billing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from api.audit import AUDIT_KEY, audit
from api.domain import DomainError
from api.practice_rules import retain_until
from models import Client, DataExport, ErasureTombstone
from storage.base import Storage, StorageUnavailable, tenant_container
from tenancy.actor import Actor

log = logging.getLogger(__name__)

# Every record of a client, by table: the ids an audit event may name.
_RECORDS = text("""
SELECT 'therapy_sessions', s.id FROM therapy_sessions s WHERE s.client_id = :c
UNION ALL
SELECT 'notes', n.id FROM notes n JOIN therapy_sessions s ON s.id = n.session_id
 WHERE s.client_id = :c
UNION ALL
SELECT 'note_amendments', a.id FROM note_amendments a JOIN notes n ON n.id = a.note_id
  JOIN therapy_sessions s ON s.id = n.session_id WHERE s.client_id = :c
UNION ALL
SELECT 'conversations', v.id FROM conversations v WHERE v.client_id = :c
UNION ALL
SELECT 'client_consents', k.id FROM client_consents k WHERE k.client_id = :c
UNION ALL
SELECT 'data_exports', e.id FROM data_exports e WHERE e.client_id = :c
""")
_MESSAGES = text("""
SELECT count(*) FROM conversation_messages m JOIN conversations v ON v.id = m.conversation_id
WHERE v.client_id = :c
""")
_REPOINT = text("SELECT public.repoint_erased_records(CAST(:ids AS uuid[]), :tombstone)")

# Deleting a blob is retried this often (the backend retries each call too) before the
# erasure gives up with 503 and changes nothing in the database.
BLOB_DELETE_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    confirm: str | None
    override_retention: str | None
    today: dt.date
    retention_years: int


def check_confirmation(client: Client, confirm: str | None) -> None:
    """Nothing is erased unless the caller typed the client's id again."""
    if confirm is None or confirm.strip().lower() != str(client.id):
        raise DomainError("validation_failed", "Type the client's id in `confirm` to erase it.",
                          errors={"json": {"confirm": ["Must be the client's id."]}})


def _delete_blobs(store: Storage, container: str, names: list[str]) -> None:
    for name in names:
        for attempt in range(1, BLOB_DELETE_ATTEMPTS + 1):
            try:
                store.delete(container, name)
                break
            except StorageUnavailable:
                if attempt == BLOB_DELETE_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)


@dataclass(frozen=True, slots=True)
class Erasure:
    tombstone: ErasureTombstone
    events_repointed: int  # audit and security events that now name the tombstone


def erase_client(db: Session, actor: Actor, client: Client, request: ErasureRequest,
                 store: Storage) -> Erasure:
    """Erase ``client`` as described in the module docstring, or stop with 422 (no
    confirmation) or 409 ``retention_period_running`` (nothing changes either way)."""
    check_confirmation(client, request.confirm)
    # Lock the client (only its row): a session or note added meanwhile waits for us.
    db.execute(select(Client.id).where(Client.id == client.id).with_for_update())
    records = db.execute(_RECORDS, {"c": client.id}).all()
    counts = Counter(table for table, _id in records)
    documented = counts["therapy_sessions"] + counts["notes"] > 0
    until = retain_until(client.treatment_ended_on, request.retention_years)
    running = until is None or until >= request.today
    if documented and running and request.override_retention is None:
        raise DomainError(
            "retention_period_running",
            "The treatment record must be kept until retain_until; restrict the client "
            "instead (POST /clients/{client_id}/restriction), or give override_retention.",
            errors={"retain_until": until.isoformat() if until is not None else None})
    reason = request.override_retention or (
        "retention_ended" if documented else "no_clinical_record")

    # Storage first: if it stays down, nothing below happens.
    exports = db.execute(select(DataExport.blob_name).where(
        (DataExport.client_id == client.id) | (DataExport.kind == "practice"),
        DataExport.blob_name.is_not(None))).scalars().all()
    _delete_blobs(store, tenant_container(actor.tenant_id), sorted(n for n in exports if n))
    db.execute(delete(DataExport).where(DataExport.kind == "practice"))

    tombstone = ErasureTombstone(
        erased_by=actor.user_id, reason=reason, retain_until=until,
        record_counts={"clients": 1, **{table: counts[table] for table in (
            "therapy_sessions", "notes", "note_amendments", "conversations",
            "client_consents", "data_exports")},
            "conversation_messages": int(db.scalar(_MESSAGES, {"c": client.id}) or 0)})
    db.add(tombstone)
    db.flush()
    db.execute(delete(Client).where(Client.id == client.id),
               execution_options={"synchronize_session": False})
    db.expunge(client)
    erased = [client.id, *(record_id for _table, record_id in records)]
    repointed = int(db.scalar(_REPOINT, {"ids": [str(i) for i in erased],
                                          "tombstone": tombstone.id}) or 0)
    _repoint_pending(db, set(erased), tombstone.id)
    db.refresh(tombstone)
    audit(db, actor, "client.erase", "erasure_tombstone", [tombstone.id])
    log.info("client erased: tombstone %s, reason %s", tombstone.id, reason)
    return Erasure(tombstone, repointed)


def _repoint_pending(db: Session, erased: set[uuid.UUID], tombstone: uuid.UUID) -> None:
    """The request's audit events not written yet name the tombstone too."""
    for event in db.info.get(AUDIT_KEY, []):
        ids = [tombstone if i in erased else i for i in event["resource_ids"]]
        event["resource_ids"] = list(dict.fromkeys(ids))

"""Erasure of a client (GDPR Art. 17) within the limits of the duty to keep records.

Art. 17(3)(b) GDPR with § 35(3) BDSG: while a legal duty to keep the treatment record
runs (§ 630f(3) BGB: 10 years after the treatment ended), the record is restricted
(Art. 18), not erased. ``erase_client`` enforces that and, when erasure is allowed,
removes the client and everything derived from them in one transaction:

1. the client's exports (and, because they hold every client, the practice's exports)
   are deleted from storage first, each retried until it is gone; if storage stays
   down, nothing else happens (503) and the request can be repeated;
2. the client row is deleted (with the erasure's who, why and retention date in the
   transaction's settings); sessions (with transcripts), notes, their amendments,
   consents, conversations and messages, exports and identity keys follow by the
   foreign keys' ``ON DELETE CASCADE`` (only this client's rows are locked);
3. the delete fires the database's ``erasure_trail`` trigger (public migration 0007),
   which writes the tombstone and re-points the audit and security events that named
   the client's record ids to it (the app role can neither update audit rows nor write
   tombstones itself); the audit events this request has not written yet are
   re-pointed here.

The usage ledger (``public.llm_usage``) holds no client data and stays for billing. Its
rows name the therapy session or conversation a call served (``artifact_id``); the same
trigger clears those of the client's records (public migration 0008), so the rows keep
their tokens and cost but no id of an erased record (the app role cannot update the
ledger itself).
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
from api.clients.operations import last_session_day
from api.domain import DomainError
from api.exports.operations import blob_name
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
_LOCK_CHILDREN = (
    text("SELECT 1 FROM therapy_sessions WHERE client_id = :c FOR UPDATE"),
    text("SELECT 1 FROM notes n JOIN therapy_sessions s ON s.id = n.session_id "
         "WHERE s.client_id = :c FOR UPDATE OF n"),
    text("SELECT 1 FROM conversations WHERE client_id = :c FOR UPDATE"),
)
_ERASURE_SETTINGS = text(
    "SELECT set_config('app.erasure_by', :by, true), "
    "set_config('app.erasure_reason', :reason, true), "
    "set_config('app.erasure_retain_until', :until, true)")
_ERASURE_OUTCOME = text("SELECT current_setting('app.erasure_tombstone'), "
                        "current_setting('app.erasure_repointed')")

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
    confirmation), 404 (erased meanwhile) or 409 ``retention_period_running`` (nothing
    changes in any of these cases)."""
    check_confirmation(client, request.confirm)
    # Lock the client, re-read under the lock (a concurrent erasure or change wins
    # first), and the rows new records would hang from: a note, amendment or message
    # added meanwhile waits for this transaction, then finds its parent gone (404).
    locked = db.execute(select(Client).where(Client.id == client.id).with_for_update()
                        .execution_options(populate_existing=True)).scalar_one_or_none()
    if locked is None:
        raise DomainError("not_found", "No such client.")
    for statement in _LOCK_CHILDREN:
        db.execute(statement, {"c": locked.id})
    records = db.execute(_RECORDS, {"c": locked.id}).all()
    counts = Counter(table for table, _id in records)
    documented = counts["therapy_sessions"] + counts["notes"] > 0
    # Retention runs from the end of the treatment, never from before its last session.
    ended = locked.treatment_ended_on
    last = last_session_day(db, locked.id)
    if ended is not None and last is not None and last > ended:
        ended = last
    until = retain_until(ended, request.retention_years)
    running = until is None or until >= request.today
    if documented and running and request.override_retention is None:
        raise DomainError(
            "retention_period_running",
            "The treatment record must be kept until retain_until; restrict the client "
            "instead (POST /clients/{client_id}/restriction), or give override_retention.",
            errors={"retain_until": until.isoformat() if until is not None else None})
    reason = request.override_retention or (
        "retention_ended" if documented else "no_clinical_record")

    # Storage first: if it stays down, nothing below happens. Every export file of the
    # client, and of the practice (each holds every client), whatever its row's status:
    # the rows are locked, so no export job can mark one ready meanwhile.
    exports = db.execute(select(DataExport.id, DataExport.blob_name).where(
        (DataExport.client_id == locked.id) | (DataExport.kind == "practice"))
        .with_for_update()).all()
    _delete_blobs(store, tenant_container(actor.tenant_id),
                  sorted({name or blob_name(export_id) for export_id, name in exports}))
    db.execute(delete(DataExport).where(DataExport.kind == "practice"))

    # The delete is the erasure: the database's trigger (public migration 0007) writes
    # the tombstone and re-points the audit trail; the cascade removes the records.
    db.execute(_ERASURE_SETTINGS, {"by": actor.user_id, "reason": reason,
                                   "until": until.isoformat() if until else ""})
    db.execute(delete(Client).where(Client.id == locked.id),
               execution_options={"synchronize_session": False})
    db.expunge(locked)
    tombstone_id, repointed = db.execute(_ERASURE_OUTCOME).one()
    tombstone = db.get(ErasureTombstone, uuid.UUID(tombstone_id))
    assert tombstone is not None
    _repoint_pending(db, {locked.id, *(record_id for _t, record_id in records)}, tombstone.id)
    audit(db, actor, "client.erase", "erasure_tombstone", [tombstone.id])
    return Erasure(tombstone, int(repointed))


def _repoint_pending(db: Session, erased: set[uuid.UUID], tombstone: uuid.UUID) -> None:
    """The request's audit events not written yet name the tombstone too."""
    for event in db.info.get(AUDIT_KEY, []):
        ids = [tombstone if i in erased else i for i in event["resource_ids"]]
        event["resource_ids"] = list(dict.fromkeys(ids))

"""``flask gdpr purge``: the scheduled half of the data lifecycle.

Idempotent and safe to run from a scheduler (daily is plenty). For every practice:

- a restricted client whose ``retain_until`` has passed is erased (reason
  ``retention_ended``), exactly as an admin's erasure would (``api.clients.erasure``);
- an export past its ``expires_at`` is deleted, file first;
- an export still ``pending`` or ``running`` an hour after it was asked for (its worker
  process died) is marked ``failed`` (``interrupted``), so the admin can ask again;
- a practice whose offboarding was interrupted (status ``closing``) is finished.

Each client and each export is its own transaction: one failure (storage down) leaves
the rest done and is retried by the next run. It acts as the database owner in each
tenant's context (``tenancy.context.enter_as_platform``); its audit events name the
actor ``system:purge``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from api.audit import AUDIT_KEY
from api.clients.erasure import ErasureRequest, erase_client
from api.domain import DomainError
from api.exports.operations import purge_expired_exports
from api.practice_rules import practice_rules, retain_until
from models import AuditEvent, Client, DataExport
from models.audit_event import AUDIT_WRITE_COLUMNS
from storage.base import Storage, StorageError, tenant_container
from tenancy.actor import Actor
from tenancy.context import enter_as_platform
from tenancy.offboarding import erase_tenant
from tenancy.provisioning import list_tenants

log = logging.getLogger(__name__)

PURGE_ACTOR = "system:purge"
STALE_EXPORT_AFTER = dt.timedelta(hours=1)


@dataclass
class PurgeReport:
    dry_run: bool = False
    clients_erased: dict[uuid.UUID, int] = field(default_factory=dict)
    exports_deleted: dict[uuid.UUID, int] = field(default_factory=dict)
    exports_failed: dict[uuid.UUID, int] = field(default_factory=dict)
    tenants_erased: list[uuid.UUID] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        would = "would have " if self.dry_run else ""
        out = [f"tenant {t}: {would}finished offboarding" if self.dry_run
               else f"tenant {t}: offboarding finished" for t in self.tenants_erased]
        for tenant in sorted({*self.clients_erased, *self.exports_deleted,
                              *self.exports_failed}, key=str):
            out.append(f"tenant {tenant}: {would}erased {self.clients_erased.get(tenant, 0)} "
                       f"client(s) whose retention ended, {would}deleted "
                       f"{self.exports_deleted.get(tenant, 0)} expired export(s), {would}"
                       f"marked {self.exports_failed.get(tenant, 0)} interrupted export(s) "
                       "failed")
        out += [f"error: {e}" for e in self.errors]
        out = out or ["nothing to purge"]
        return ["dry run: nothing was changed", *out] if self.dry_run else out


@contextmanager
def platform_session(owner_engine: Engine, tenant_id: uuid.UUID, *,
                     dry_run: bool = False) -> Iterator[Session]:
    """One transaction in ``tenant_id``'s context as the owner, committed on success with
    the audit events its work queued (rolled back instead with ``dry_run``)."""
    with owner_engine.connect() as conn:
        transaction = conn.begin()
        enter_as_platform(conn, tenant_id)
        db = Session(bind=conn)
        try:
            yield db
            events = db.info.pop(AUDIT_KEY, [])
            if events:
                db.execute(insert(AuditEvent), [
                    {column: event[column] for column in AUDIT_WRITE_COLUMNS}
                    for event in events])
            db.flush()
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
        finally:
            db.close()
            if transaction.is_active:
                transaction.rollback()


class _Rehearsal:
    """A storage that lists but deletes nothing (``flask gdpr purge --dry-run``)."""

    def __init__(self, store: Storage) -> None:
        self.store = store

    def list(self, container: str, prefix: str = "") -> list[str]:
        return self.store.list(container, prefix)

    def delete(self, container: str, name: str) -> None:
        return None

    def delete_container(self, container: str) -> None:
        return None


def purge(owner_engine: Engine, store: Storage, *, now: dt.datetime,
          default_retention_years: int, dry_run: bool = False) -> PurgeReport:
    """Do (or with ``dry_run``, only count: every transaction is rolled back and no file
    is deleted) what the module docstring lists, for every practice."""
    report = PurgeReport(dry_run=dry_run)
    target: Any = _Rehearsal(store) if dry_run else store
    for tenant in list_tenants(owner_engine):
        try:
            if tenant.status == "closing":
                if not dry_run:
                    erase_tenant(owner_engine, store, tenant.id)
                report.tenants_erased.append(tenant.id)
            elif tenant.status in ("active", "suspended"):
                _purge_tenant(owner_engine, target, tenant.id, now, default_retention_years,
                              report)
        except Exception as exc:  # one practice's failure never stops the others
            log.error("purge of tenant %s failed (%s)", tenant.id, type(exc).__name__)
            report.errors.append(f"tenant {tenant.id}: {type(exc).__name__}; retried next run")
    return report


def _purge_tenant(owner_engine: Engine, store: Storage, tenant_id: uuid.UUID,
                  now: dt.datetime, default_years: int, report: PurgeReport) -> None:
    actor = Actor(tenant_id=tenant_id, user_id=PURGE_ACTOR, role="system")
    dry = report.dry_run
    with platform_session(owner_engine, tenant_id, dry_run=dry) as db:
        years = practice_rules(db, default_years).record_retention_years
        candidates = db.execute(select(Client.id, Client.treatment_ended_on).where(
            Client.restricted_at.is_not(None), Client.treatment_ended_on.is_not(None))).all()
        stale = db.execute(update(DataExport).where(
            DataExport.status.in_(("pending", "running")),
            DataExport.created_at < now - STALE_EXPORT_AFTER,
        ).values(status="failed", error="interrupted", finished_at=now)
            .returning(DataExport.id)).all()
    if stale:
        report.exports_failed[tenant_id] = len(stale)
    today = now.date()
    for client_id, ended in candidates:
        until = retain_until(ended, years)
        if until is None or until >= today:
            continue
        try:
            with platform_session(owner_engine, tenant_id, dry_run=dry) as db:
                client = db.get(Client, client_id, with_for_update=True)
                if client is None or client.restricted_at is None:
                    continue
                erased = erase_client(db, actor, client, ErasureRequest(
                    confirm=str(client_id), override_retention=None, today=today,
                    retention_years=years), store)
            report.clients_erased[tenant_id] = report.clients_erased.get(tenant_id, 0) + 1
            if not dry:
                log.info("client erased by the purge: tombstone %s", erased.tombstone.id)
        except DomainError as exc:  # e.g. a session after the recorded treatment end
            report.errors.append(f"tenant {tenant_id}: client {client_id} not erased "
                                 f"({exc.code}); check its treatment end")
        except StorageError as exc:
            report.errors.append(f"tenant {tenant_id}: a client's erasure "
                                 f"({type(exc).__name__}); retried next run")
    container = tenant_container(tenant_id)
    try:
        with platform_session(owner_engine, tenant_id, dry_run=dry) as db:
            deleted = purge_expired_exports(db, lambda name: store.delete(container, name),
                                            now=now)
        if deleted:
            report.exports_deleted[tenant_id] = deleted
    except StorageError as exc:
        report.errors.append(f"tenant {tenant_id}: expired exports "
                             f"({type(exc).__name__}); retried next run")

"""Running an export: build the ZIP, upload it, record the outcome. Flask-free.

``run_export(job)`` does the whole job synchronously (a benchmark, the CLI and
offboarding call it directly); ``ExportWorker`` runs it on a small thread pool for the
API, which answers 202 first. The job opens its own session for the requesting
``Actor`` (the tenant's context and row-level security, as any request), marks the
export ``running``, writes the archive into a temporary file (never the whole export in
memory while it is built), uploads it as ``exports/<id>.zip`` into the practice's
container and marks it ``ready`` with its size and SHA-256. Any failure marks it
``failed`` with a machine code (``storage_unavailable`` or ``export_failed``), never a
message: the logs get the exception's type and the export id, no record content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
import threading
import uuid
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from sqlalchemy.orm import Session, sessionmaker

from api.exports import operations
from models import DataExport
from storage.base import Storage, StorageError, tenant_container
from tenancy.actor import Actor
from tenancy.context import reopen_session
from tenancy.errors import TenancyError

log = logging.getLogger(__name__)
# Read the temporary ZIP back in pieces of this size (hash).
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ExportJob:
    export_id: uuid.UUID
    actor: Actor
    sessions: sessionmaker[Session]
    storage: Storage
    record_retention_years: int


def _build(db: Session, job: ExportJob, export: DataExport, archive: IO[bytes]) -> None:
    practice = operations.practice_info(db, job.actor.tenant_id, job.record_retention_years)
    exported_at = dt.datetime.now(dt.UTC)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=6) as zf:
        if export.kind == "client":
            assert export.client_id is not None
            operations.write_client_archive(db, zf, export.client_id, practice, exported_at)
        else:
            operations.write_practice_archive(db, zf, practice, exported_at)


def _digest(archive: IO[bytes]) -> tuple[int, str]:
    archive.seek(0)
    sha, size = hashlib.sha256(), 0
    while piece := archive.read(_CHUNK):
        sha.update(piece)
        size += len(piece)
    return size, sha.hexdigest()


def run_export(job: ExportJob) -> str:
    """Build and upload the export; return its final status (``ready`` or ``failed``).

    Only a ``pending`` export is run (a second call does nothing and returns the status
    it finds).
    """
    try:
        db = reopen_session(job.sessions, job.actor)
    except Exception as exc:  # the membership ended or changed role since the request
        log.error("export %s could not start (%s)", job.export_id, type(exc).__name__)
        return "pending"
    name = operations.blob_name(job.export_id)
    uploaded = False
    try:
        export = db.get(DataExport, job.export_id, with_for_update=True)
        if export is None or export.status != "pending":
            status = export.status if export is not None else "missing"
            db.rollback()
            return status
        export.status = "running"
        db.commit()
        with tempfile.NamedTemporaryFile(prefix="clinai-export-", suffix=".zip") as archive:
            _build(db, job, export, archive)
            db.rollback()  # end the long read; nothing was written
            size, sha256 = _digest(archive)
            archive.seek(0)
            # Streamed from the file: memory stays flat however large the archive.
            job.storage.put(tenant_container(job.actor.tenant_id), name, archive,
                            content_type="application/zip")
            uploaded = True
        export.status, export.blob_name = "ready", name
        export.size_bytes, export.sha256 = size, sha256
        export.finished_at = dt.datetime.now(dt.UTC)
        db.commit()
        return "ready"
    except Exception as exc:
        code = "storage_unavailable" if isinstance(exc, StorageError) else "export_failed"
        # The type only: a database error's message can quote the record.
        log.error("export %s failed (%s, %s)", job.export_id, type(exc).__name__, code)
        _mark_failed(db, job, code)
        if uploaded:
            _discard(job, name)
        return "failed"
    finally:
        db.close()


def _mark_failed(db: Session, job: ExportJob, code: str) -> None:
    try:
        db.rollback()
        export = db.get(DataExport, job.export_id)
        if export is not None:
            export.status, export.error = "failed", code
            export.finished_at = dt.datetime.now(dt.UTC)
            export.blob_name = export.size_bytes = export.sha256 = None
            db.commit()
    except Exception as exc:
        # Expected when the practice closed or the client was erased meanwhile.
        level = logging.WARNING if isinstance(exc, TenancyError) else logging.ERROR
        log.log(level, "export %s: recording the failure failed (%s)", job.export_id,
                type(exc).__name__)


def _discard(job: ExportJob, name: str) -> None:
    try:
        job.storage.delete(tenant_container(job.actor.tenant_id), name)
    except Exception as exc:
        log.error("export %s: removing the orphaned file failed (%s)", job.export_id,
                  type(exc).__name__)


class ExportWorker:
    """A small in-process pool that runs exports after the request answered 202.

    The pool starts on the first export; ``shutdown`` waits for running jobs (the app's
    teardown in tests; at interpreter exit Python joins the threads too). An export
    whose process dies while it runs stays ``running``.
    """

    def __init__(self, max_workers: int = 2) -> None:
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, job: ExportJob) -> Future[str]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._max_workers,
                                                thread_name_prefix="clinai-export")
            return self._pool.submit(run_export, job)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)

"""Data exports: a client's record (GDPR Art. 15/20) or the whole practice, as one ZIP."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import Flask, current_app, url_for
from flask.views import MethodView
from sqlalchemy import select

from api.audit import audit
from api.auth import actor, admin_only
from api.blueprint import Blueprint
from api.db import commit_request, get_db, session
from api.examples import EXPORT, EXPORT_CREATED, PRACTICE_EXPORT_CREATED
from api.exports import operations
from api.exports.jobs import ExportJob, ExportWorker
from api.exports.schemas import ExportCreatedSchema, ExportSchema
from api.storage import storage
from models import Client, DataExport
from storage.base import MAX_DOWNLOAD_LIFETIME, tenant_container
from tenancy.actor import Actor

EXTENSION = "clinai_exports"
# Download links live this long, and never past the export's own expiry.
DOWNLOAD_LIFETIME = MAX_DOWNLOAD_LIFETIME

blp = Blueprint("exports", __name__, url_prefix="/api/v1",
                description="Exports of a client's record (GDPR Art. 15 access, Art. 20 "
                            "portability) and of the whole practice, as one ZIP file. "
                            "Admins only.")

_LOCATION = {"Location": {"description": "The export's status: `GET /api/v1/exports/{id}`",
                          "schema": {"type": "string"}}}


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = ExportWorker(max_workers=app.config["EXPORT_WORKERS"])


def worker() -> ExportWorker:
    runner: ExportWorker = current_app.extensions[EXTENSION]
    return runner


def _start(export: DataExport, who: Actor) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Commit the export's row with its audit event, hand the job to the worker, 202."""
    commit_request(session())  # the job's own session must see the row
    worker().submit(ExportJob(
        export_id=export.id, actor=who, sessions=get_db().sessions, storage=storage(),
        record_retention_years=current_app.config["RECORD_RETENTION_YEARS"]))
    location = url_for("exports.ExportsById", export_id=export.id)
    return {"id": export.id, "status": export.status}, 202, {"Location": location}


def _retention() -> dt.timedelta:
    return dt.timedelta(days=current_app.config["EXPORT_RETENTION_DAYS"])


@blp.route("/clients/<uuid:client_id>/exports")
class ClientExports(MethodView):
    @admin_only
    @blp.response(202, ExportCreatedSchema, example=EXPORT_CREATED, headers=_LOCATION)
    @blp.errors("not_found")
    def post(self, client_id: uuid.UUID) -> Any:
        """Export everything held about a client (GDPR Art. 15 / Art. 20). Admins only.

        Answers 202 at once with the export's `id` and `status` (`pending`) and a
        `Location` header; the file is built in the background, usually within seconds.
        Poll `GET /exports/{id}` until `status` is `ready` (or `failed`), then download
        the ZIP through its `download_url`. Restricted clients (Art. 18) are exported too.

        The ZIP holds two files:

        - `data.json` (UTF-8, `"format": "clinai.client-export/1"`, keys in a fixed
          order, times in ISO 8601 UTC): `practice` (id, name); `client` (every stored
          field: profile, contact, assigned therapist, status, `treatment_ended_on`,
          `retain_until`, restriction); `consents` (full history, withdrawn ones too);
          `sessions` (with transcripts), each with its `notes` (format, status, author,
          signer, the current `content`, the `original_content` as signed, and every
          amendment with reason, author and time, as `GET /notes/{note_id}` shows them);
          `conversations` with their `messages` (role, text, author, token counts);
          `ai_usage` (counts only: AI-drafted notes, chat questions and replies, prompt and
          completion tokens); `exports` (this client's exports); `access_log` (every audit
          event naming any of the client's records: when, who, role, action, type, which
          of the client's record ids). Lists are ordered by time, then id.
        - `record.html`: the same, as a page a client can open in any browser (no
          scripts, no external resources), every section headed in German and English.

        The file is kept `EXPORT_RETENTION_DAYS` (default 30) days, then deleted. The
        request is audited (`export.create`, with the export's and the client's ids).
        404 when the client does not exist or belongs to another practice.
        """
        db, who = session(), actor()
        export = operations.create_export(db, who, kind="client", client_id=client_id,
                                          retention=_retention())
        audit(db, who, "export.create", "data_export", [export.id, client_id])
        return _start(export, who)


@blp.route("/admin/tenant/exports")
class PracticeExports(MethodView):
    @admin_only
    @blp.response(202, ExportCreatedSchema, example=PRACTICE_EXPORT_CREATED,
                  headers=_LOCATION)
    def post(self) -> Any:
        """Export the whole practice: every client, the members and the settings. Admins
        only.

        For a practice that moves its records elsewhere (it stays bound to keep them,
        § 630f(3) BGB). The same machinery as a client's export: 202 with `id` and
        `status`, then poll `GET /exports/{id}` for the `download_url`. The ZIP holds
        `practice.json` (`"format": "clinai.practice-export/1"`: practice id and name,
        `settings`, `members` with their user ids and roles, the exported client ids),
        `index.html` (a page listing every client by id, linking their records) and for
        each client `clients/<client id>/data.json` and `clients/<client id>/record.html`,
        exactly as in a client's export. Kept `EXPORT_RETENTION_DAYS` days; audited
        (`export.create`, and `client.restricted_access` naming the restricted clients it
        includes).
        """
        db, who = session(), actor()
        export = operations.create_export(db, who, kind="practice", client_id=None,
                                          retention=_retention())
        audit(db, who, "export.create", "data_export", [export.id])
        restricted = db.scalars(select(Client.id).where(Client.restricted_at.is_not(None))
                                .order_by(Client.id)).all()
        if restricted:  # their records are read for the archive
            audit(db, who, "client.restricted_access", "client", restricted)
        return _start(export, who)


@blp.route("/exports/<uuid:export_id>")
class ExportsById(MethodView):
    @admin_only
    @blp.response(200, ExportSchema, example=EXPORT)
    @blp.errors("not_found", "export_expired", "storage_unavailable")
    def get(self, export_id: uuid.UUID) -> dict[str, Any]:
        """Show an export; when `ready`, with a short-lived `download_url`. Admins only.

        `status` is `pending` or `running` while the file is built, then `ready` (with
        `size_bytes` and `sha256` of the ZIP) or `failed` (with a machine code in
        `error`: `storage_unavailable` or `export_failed`; request a new export). Each
        read of a ready export issues a fresh `download_url`, valid until
        `download_expires_at` (at most 15 minutes, never past the export's `expires_at`);
        the link itself is the credential, so do not log or share it. Issuing a link is
        audited (`export.read`). 410 `export_expired` after `expires_at`: the file is
        deleted, request a new export. 404 for an unknown id or another practice's.
        """
        db, who, now = session(), actor(), dt.datetime.now(dt.UTC)
        export = operations.get_export(db, export_id, now=now)
        body: dict[str, Any] = {column: getattr(export, column) for column in (
            "id", "kind", "client_id", "status", "error", "created_at", "finished_at",
            "expires_at", "size_bytes", "sha256")}
        body["download_url"] = body["download_expires_at"] = None
        if export.status == "ready" and export.blob_name:
            lifetime = min(DOWNLOAD_LIFETIME, export.expires_at - now)
            body["download_url"] = storage().download_url(
                tenant_container(who.tenant_id), export.blob_name, expires_in=lifetime,
                filename=operations.download_filename(export))
            body["download_expires_at"] = now + lifetime
            ids = [export.id] if export.client_id is None else [export.id, export.client_id]
            audit(db, who, "export.read", "data_export", ids)
        return body

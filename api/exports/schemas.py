from __future__ import annotations

import marshmallow as ma

from models.data_export import EXPORT_KINDS, EXPORT_STATUSES


class ExportCreatedSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    status = ma.fields.String(dump_only=True, metadata={"enum": list(EXPORT_STATUSES)})


class ExportSchema(ma.Schema):
    id = ma.fields.UUID(dump_only=True)
    kind = ma.fields.String(dump_only=True, metadata={
        "enum": list(EXPORT_KINDS), "description": "`client` or the whole `practice`"})
    client_id = ma.fields.UUID(dump_only=True, allow_none=True, metadata={
        "description": "The exported client; null for a practice export"})
    status = ma.fields.String(dump_only=True, metadata={
        "enum": list(EXPORT_STATUSES),
        "description": "`pending` and `running` until the file is built; then `ready` or "
                       "`failed`"})
    error = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "Why a `failed` export failed: `storage_unavailable` or "
                       "`export_failed`; null otherwise"})
    created_at = ma.fields.DateTime(dump_only=True)
    finished_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    expires_at = ma.fields.DateTime(dump_only=True, metadata={
        "description": "When the file is deleted (`EXPORT_RETENTION_DAYS` after the "
                       "request); afterwards the export answers 410 `export_expired`"})
    size_bytes = ma.fields.Integer(dump_only=True, allow_none=True,
                                   metadata={"description": "Size of the ZIP file"})
    sha256 = ma.fields.String(dump_only=True, allow_none=True,
                              metadata={"description": "SHA-256 of the ZIP file, hex"})
    download_url = ma.fields.String(dump_only=True, allow_none=True, metadata={
        "description": "Only when `ready`: a link to the ZIP that works without a token "
                       "until `download_expires_at` (at most 15 minutes); ask again for a "
                       "new one"})
    download_expires_at = ma.fields.DateTime(dump_only=True, allow_none=True)

"""The app's blob storage (``storage/``), built from settings, and the download route.

``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL`` select Azure Blob
Storage; otherwise files live under ``STORAGE_LOCAL_ROOT`` (default
``instance/storage``) and ``GET /api/v1/downloads/<token>`` serves the local backend's
signed, expiring, single-blob links, so the quickstart works offline.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app
from flask.views import MethodView

from api.blueprint import Blueprint
from api.errors import abort
from storage.azure import AzureBlobStorage
from storage.base import BlobNotFound, Storage
from storage.local import DownloadRefused, DownloadSigner, LocalStorage

EXTENSION = "clinai_storage"

blp = Blueprint("downloads", __name__, url_prefix="/api/v1/downloads",
                description="Short-lived download links of the local storage backend.")


def _signing_key(app: Flask) -> bytes:
    """``STORAGE_SIGNING_KEY`` (hex, 32+ bytes), else a key kept in the instance folder,
    shared by every worker of this deployment."""
    configured = app.config.get("STORAGE_SIGNING_KEY")
    if configured:
        return bytes.fromhex(configured)
    path = Path(app.instance_path) / "storage-signing-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
    return key


def build_storage(app: Flask) -> Storage:
    c = app.config
    if c.get("AZURE_STORAGE_CONNECTION_STRING"):
        return AzureBlobStorage.from_connection_string(c["AZURE_STORAGE_CONNECTION_STRING"])
    if c.get("AZURE_STORAGE_ACCOUNT_URL"):
        return AzureBlobStorage.from_account_url(c["AZURE_STORAGE_ACCOUNT_URL"])
    root = Path(c.get("STORAGE_LOCAL_ROOT") or Path(app.instance_path) / "storage")
    return LocalStorage(root, DownloadSigner(_signing_key(app)))


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = build_storage(app)


def storage() -> Storage:
    backend: Storage = current_app.extensions[EXTENSION]
    return backend


@blp.route("/<string:token>")
class Download(MethodView):
    @blp.response(200, content_type="application/octet-stream",
                  description="The file, as an attachment.", example="<the file's bytes>")
    @blp.errors("download_invalid", "download_expired", "not_found", "storage_unavailable")
    @blp.doc(security=[])
    def get(self, token: str) -> Any:
        """Download a file through a link the API handed out (no bearer token).

        The link is the credential: it names one file, expires after at most 15 minutes
        and cannot be altered (404 `download_invalid`; 410 `download_expired`). A file
        removed since (an erased client's export) is 404 `not_found`. Only the local
        storage backend serves links here; with Azure Blob Storage links go to Azure.
        """
        backend = storage()
        if not isinstance(backend, LocalStorage) or len(token) > 4096:
            abort(404, "download_invalid", "This download link is not valid.")
        try:
            container, name, filename = backend.signer.verify(token, dt.datetime.now(dt.UTC))
        except DownloadRefused as exc:
            abort(410 if exc.code == "download_expired" else 404, exc.code, exc.message)
        except ValueError:
            abort(404, "download_invalid", "This download link is not valid.")
        try:
            data = backend.get(container, name)
        except BlobNotFound:
            abort(404, "not_found", "The file no longer exists.")
        safe = "".join(ch for ch in filename if ch.isalnum() or ch in "._-") or "download"
        return Response(data, mimetype="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

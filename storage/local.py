"""Local filesystem storage: ``<root>/<container>/<name>``; links served by the API.

The download link is ``/api/v1/downloads/<token>``: the token names one blob, its file
name and its expiry, and carries an HMAC-SHA256 over them with the deployment's signing
key, so it is single-purpose (one blob), expiring, and cannot be altered to name another
blob. ``api/storage.py`` serves it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from storage.base import (
    BlobNotFound,
    StorageUnavailable,
    check_container,
    check_lifetime,
    check_name,
)

DOWNLOAD_PATH = "/api/v1/downloads/"


class DownloadRefused(Exception):
    """A download token that was altered, is malformed, or has expired."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DownloadSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the download signing key needs at least 32 bytes")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"clinai-download\x00" + payload, hashlib.sha256).digest()

    def sign(self, container: str, name: str, filename: str, expires_at: dt.datetime) -> str:
        payload = json.dumps({"c": container, "n": name, "f": filename,
                              "e": int(expires_at.timestamp())},
                             separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: dt.datetime) -> tuple[str, str, str]:
        """Return (container, name, filename) or raise ``DownloadRefused``."""
        try:
            encoded, mac = token.split(".")
            payload = _unb64(encoded)
            valid = hmac.compare_digest(_unb64(mac), self._mac(payload))
        except ValueError:
            valid = False
        if not valid:
            raise DownloadRefused("download_invalid", "This download link is not valid.")
        fields = json.loads(payload)
        if now.timestamp() >= fields["e"]:
            raise DownloadRefused("download_expired", "This download link has expired.")
        return check_container(fields["c"]), check_name(fields["n"]), str(fields["f"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 4096:
        raise ValueError("bad token part")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LocalStorage:
    def __init__(self, root: Path, signer: DownloadSigner, *, base_url: str = "") -> None:
        self.root = root
        self.signer = signer
        self.base_url = base_url

    def _path(self, container: str, name: str | None = None) -> Path:
        path = self.root / check_container(container)
        return path / check_name(name) if name is not None else path

    def put(self, container: str, name: str, data: bytes | IO[bytes], *,
            content_type: str = "application/octet-stream") -> None:
        path = self._path(container, name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Whole or nothing: write a temporary file, then rename it into place.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, bytes):
                    handle.write(data)
                else:
                    shutil.copyfileobj(data, handle, 1024 * 1024)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageUnavailable("the local storage could not be written") from exc

    def get(self, container: str, name: str) -> bytes:
        path = self._path(container, name)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound("no such blob") from exc
        except OSError as exc:
            raise StorageUnavailable("the local storage could not be read") from exc

    def sha256(self, container: str, name: str) -> str:
        try:
            with self._path(container, name).open("rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
        except FileNotFoundError as exc:
            raise BlobNotFound("no such blob") from exc
        except OSError as exc:
            raise StorageUnavailable("the local storage could not be read") from exc

    def delete(self, container: str, name: str) -> None:
        try:
            self._path(container, name).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable("the local storage could not be changed") from exc

    def list(self, container: str, prefix: str = "") -> list[str]:
        base = self._path(container)
        if not base.is_dir():
            return []
        names = (p.relative_to(base).as_posix() for p in base.rglob("*")
                 if p.is_file() and not p.name.startswith(".upload-"))
        return sorted(n for n in names if n.startswith(prefix))

    def delete_container(self, container: str) -> None:
        try:
            shutil.rmtree(self._path(container), ignore_errors=False)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageUnavailable("the local storage could not be changed") from exc

    def download_url(self, container: str, name: str, *, expires_in: dt.timedelta,
                     filename: str) -> str:
        expires_at = dt.datetime.now(dt.UTC) + check_lifetime(expires_in)
        token = self.signer.sign(check_container(container), check_name(name), filename,
                                 expires_at)
        return f"{self.base_url}{DOWNLOAD_PATH}{token}"

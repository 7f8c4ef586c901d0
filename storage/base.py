"""What every storage backend offers, its errors, and the names it accepts.

One private container per practice (``tenant_container``) and a platform ``billing``
container. Blob names are paths of plain segments (``exports/<id>.zip``); anything
that could escape a container or a directory (``..``, absolute paths, backslashes,
control characters) is refused before a backend sees it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import IO, Protocol

BILLING_CONTAINER = "billing"
# Azure container names: 3-63 of a-z, 0-9 and single hyphens, starting with a letter or
# digit. Ours are "t-<32 hex>" and "billing".
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
# Short-lived download links: at most this long (issue 11: "at most 15 minutes").
MAX_DOWNLOAD_LIFETIME = dt.timedelta(minutes=15)


class StorageError(Exception):
    """Base of storage errors; ``code`` is registered in ``api/error_codes.py``."""

    code = "storage_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageUnavailable(StorageError):
    """The backend could not be reached or failed, after retries (HTTP 503)."""

    code = "storage_unavailable"


class BlobNotFound(StorageError):
    code = "not_found"


def tenant_container(tenant_id: uuid.UUID) -> str:
    """The practice's own container."""
    return f"t-{tenant_id.hex}"


def check_container(container: str) -> str:
    if not _CONTAINER.match(container):
        raise ValueError(f"invalid container name {container!r}")
    return container


def check_name(name: str) -> str:
    """A blob name: 1-10 segments separated by '/', each a plain file name."""
    segments = name.split("/")
    if not 0 < len(segments) <= 10 or not all(_SEGMENT.match(s) for s in segments):
        raise ValueError("invalid blob name")
    return name


def check_lifetime(expires_in: dt.timedelta) -> dt.timedelta:
    if not dt.timedelta(0) < expires_in <= MAX_DOWNLOAD_LIFETIME:
        raise ValueError(f"a download link lives at most {MAX_DOWNLOAD_LIFETIME}")
    return expires_in


class Storage(Protocol):
    """Blob storage. Every method raises ``StorageUnavailable`` when the backend fails
    after retries; ``get`` raises ``BlobNotFound`` for a missing blob; ``delete`` of a
    missing blob (or container) succeeds, so a retried cleanup always finishes."""

    def put(self, container: str, name: str, data: bytes | IO[bytes], *,
            content_type: str = "application/octet-stream") -> None:
        """Store ``data`` (bytes, or a seekable binary file read from its current position
        in chunks, never whole) as ``name``, replacing it; whole or not at all."""
        ...

    def get(self, container: str, name: str) -> bytes: ...

    def sha256(self, container: str, name: str) -> str:
        """The blob's SHA-256 (hex), read in chunks, never whole; ``BlobNotFound``."""
        ...

    def delete(self, container: str, name: str) -> None: ...

    def list(self, container: str, prefix: str = "") -> list[str]: ...

    def delete_container(self, container: str) -> None: ...

    def download_url(self, container: str, name: str, *, expires_in: dt.timedelta,
                     filename: str) -> str:
        """A link that lets whoever holds it read this one blob until it expires."""
        ...

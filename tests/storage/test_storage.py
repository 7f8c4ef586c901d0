"""One storage suite, run against the local backend and against Azure Blob (Azurite)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.azure import AzureBlobStorage
from storage.base import BlobNotFound, StorageUnavailable, tenant_container
from storage.local import DownloadSigner, LocalStorage
from tests.ports import free_port
from tests.storage.conftest import connection_string

KEY = bytes(range(32))


@pytest.fixture(params=["local", "azure"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "storage", DownloadSigner(KEY))
    else:
        yield AzureBlobStorage.from_connection_string(request.getfixturevalue("azurite"))


def test_a_file_is_stored_from_its_stream(backend: Any) -> None:
    """A large file goes up from a file object (in blocks on Azure), into a container
    that does not exist yet, from the stream's current position."""
    container = tenant_container(uuid.uuid4())
    payload = os.urandom(9 * 1024 * 1024 + 17)
    with tempfile.TemporaryFile() as handle:
        handle.write(b"skip" + payload)
        handle.seek(4)
        backend.put(container, "exports/big.zip", handle, content_type="application/zip")
    assert backend.get(container, "exports/big.zip") == payload
    backend.delete_container(container)


def test_put_get_list_delete(backend: Any) -> None:
    container = tenant_container(uuid.uuid4())
    assert backend.list(container) == []  # a container that does not exist yet
    backend.put(container, "exports/a.zip", b"zip-a", content_type="application/zip")
    backend.put(container, "exports/b.zip", b"zip-b")
    backend.put(container, "other/c.txt", b"c")
    backend.put(container, "exports/a.zip", b"zip-a2")  # overwrite
    assert backend.get(container, "exports/a.zip") == b"zip-a2"
    assert backend.list(container, "exports/") == ["exports/a.zip", "exports/b.zip"]
    assert backend.list(container) == ["exports/a.zip", "exports/b.zip", "other/c.txt"]
    backend.delete(container, "exports/a.zip")
    backend.delete(container, "exports/a.zip")  # idempotent: a retried cleanup finishes
    with pytest.raises(BlobNotFound):
        backend.get(container, "exports/a.zip")
    backend.delete_container(container)
    backend.delete_container(container)
    assert backend.list(container) == []


def test_sha256_is_of_the_stored_bytes(backend: Any) -> None:
    container = tenant_container(uuid.uuid4())
    payload = os.urandom(5 * 1024 * 1024 + 17)  # more than one download chunk
    backend.put(container, "billing/big.csv", payload)
    assert backend.sha256(container, "billing/big.csv") == hashlib.sha256(payload).hexdigest()
    with pytest.raises(BlobNotFound):
        backend.sha256(container, "billing/missing.csv")
    backend.delete_container(container)


def test_containers_are_separate(backend: Any) -> None:
    a, b = tenant_container(uuid.uuid4()), tenant_container(uuid.uuid4())
    backend.put(a, "x.bin", b"a's")
    with pytest.raises(BlobNotFound):
        backend.get(b, "x.bin")
    assert backend.list(b) == []


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a//b", "a\\b", ".hidden", "a/../b",
                                  "x\x00", ""])
def test_names_that_could_escape_are_refused(backend: Any, name: str) -> None:
    with pytest.raises(ValueError):
        backend.put(tenant_container(uuid.uuid4()), name, b"x")


def test_container_names_are_checked(backend: Any) -> None:
    for container in ("../up", "UPPER", "a", "t_" + "0" * 32):
        with pytest.raises(ValueError):
            backend.put(container, "x.bin", b"x")


def test_download_links_live_at_most_15_minutes(backend: Any) -> None:
    container = tenant_container(uuid.uuid4())
    backend.put(container, "x.bin", b"x")
    with pytest.raises(ValueError):
        backend.download_url(container, "x.bin", expires_in=dt.timedelta(minutes=16),
                             filename="x.bin")


def test_azure_download_link_reads_one_blob_until_it_expires(azurite: str) -> None:
    backend = AzureBlobStorage.from_connection_string(azurite)
    container = tenant_container(uuid.uuid4())
    backend.put(container, "exports/e.zip", b"export bytes")
    backend.put(container, "exports/other.zip", b"other")
    url = backend.download_url(container, "exports/e.zip", expires_in=dt.timedelta(minutes=5),
                               filename="export.zip")
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"export bytes"
    assert 'filename="export.zip"' in response.headers["content-disposition"]
    # The signature covers the blob's name: it cannot be pointed at another blob.
    assert httpx.get(url.replace("exports/e.zip", "exports/other.zip")).status_code == 403
    tampered = url.replace("sig=", "sig=A")
    assert httpx.get(tampered).status_code == 403
    short = backend.download_url(container, "exports/e.zip", expires_in=dt.timedelta(seconds=1),
                                 filename="export.zip")
    time.sleep(2.1)
    assert httpx.get(short).status_code == 403
    backend.delete(container, "exports/e.zip")
    assert httpx.get(url).status_code == 404  # erased: the link finds nothing


def test_an_unreachable_azure_backend_is_storage_unavailable() -> None:
    backend = AzureBlobStorage.from_connection_string(connection_string(free_port()))
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        backend.put(tenant_container(uuid.uuid4()), "x.bin", b"x")
    with pytest.raises(StorageUnavailable):
        backend.get(tenant_container(uuid.uuid4()), "x.bin")
    assert time.monotonic() - started < 10  # retried a few times, then given up


def test_local_download_link_through_the_api(app: Any) -> None:
    backend = app.extensions["clinai_storage"]
    assert isinstance(backend, LocalStorage)
    container = tenant_container(uuid.uuid4())
    backend.put(container, "exports/e.zip", b"export bytes")
    backend.put(container, "exports/other.zip", b"other")
    url = backend.download_url(container, "exports/e.zip", expires_in=dt.timedelta(minutes=5),
                               filename="export.zip")
    client = app.test_client()
    response = client.get(url)  # no bearer token: the link is the credential
    assert response.status_code == 200 and response.data == b"export bytes"
    assert response.headers["Content-Disposition"] == 'attachment; filename="export.zip"'
    assert response.headers["Cache-Control"] == "no-store"
    token = url.rsplit("/", 1)[1]
    payload, mac = token.split(".")
    forged_payload = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    for bad in (f"{forged_payload}.{mac}", f"{payload}.{mac[:-2]}xx", "x", "a.b.c",
                "." * 5000):
        refused = client.get(f"/api/v1/downloads/{bad}")
        assert (refused.status_code, refused.json["error"]) == (404, "download_invalid"), bad
    expired = backend.signer.sign(container, "exports/e.zip", "export.zip",
                                  dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    gone = client.get(f"/api/v1/downloads/{expired}")
    assert (gone.status_code, gone.json["error"]) == (410, "download_expired")
    backend.delete(container, "exports/e.zip")
    erased = client.get(url)
    assert (erased.status_code, erased.json["error"]) == (404, "not_found")

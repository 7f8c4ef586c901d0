"""Azure Blob Storage (``azure-storage-blob``); tested against Azurite.

Credentials: ``AZURE_STORAGE_CONNECTION_STRING`` (an account key: download links are
account-key SAS) or ``AZURE_STORAGE_ACCOUNT_URL`` with ``DefaultAzureCredential`` (a
managed identity in Azure: download links are user-delegation SAS, signed with a key
the identity obtains, valid at most as long as the link). Every link grants read on one
blob only, over HTTPS where the endpoint is HTTPS, and names the file to save it as.

Retries: the SDK's linear policy (3 tries, 1 s apart, short connect timeout); what still
fails is ``StorageUnavailable`` (HTTP 503 ``storage_unavailable``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from typing import IO, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    LinearRetry,
    generate_blob_sas,
)

from storage.base import (
    BlobNotFound,
    StorageUnavailable,
    check_container,
    check_lifetime,
    check_name,
)


def _client_options() -> dict[str, Any]:
    # The storage SDK's default retry waits 15 s, then longer: a request would hang for
    # minutes on an outage. Three tries a second apart, then StorageUnavailable.
    # Files above 8 MiB go up in 4 MiB blocks, read as they are sent (exports stream from
    # a temporary file): memory per upload stays at a block or two.
    return {"retry_policy": LinearRetry(backoff=1, random_jitter_range=0, retry_total=2),
            "connection_timeout": 5, "read_timeout": 30,
            "max_single_put_size": 8 * 1024 * 1024, "max_block_size": 4 * 1024 * 1024}


class AzureBlobStorage:
    def __init__(self, service: BlobServiceClient) -> None:
        self.service = service

    @classmethod
    def from_connection_string(cls, connection_string: str) -> AzureBlobStorage:
        return cls(BlobServiceClient.from_connection_string(connection_string,
                                                            **_client_options()))

    @classmethod
    def from_account_url(cls, account_url: str, credential: Any = None) -> AzureBlobStorage:
        if credential is None:
            from azure.identity import DefaultAzureCredential
            credential = DefaultAzureCredential()
        return cls(BlobServiceClient(account_url, credential=credential,
                                     **_client_options()))

    def put(self, container: str, name: str, data: bytes | IO[bytes], *,
            content_type: str = "application/octet-stream") -> None:
        client = self.service.get_container_client(check_container(container))
        settings = ContentSettings(content_type=content_type)
        start = None if isinstance(data, bytes) else data.tell()
        try:
            try:  # a file is uploaded in blocks, read as it goes
                client.upload_blob(check_name(name), data, overwrite=True,
                                   content_settings=settings)
            except ResourceNotFoundError:  # the container's first blob
                with contextlib.suppress(ResourceExistsError):
                    client.create_container()
                if start is not None and not isinstance(data, bytes):
                    data.seek(start)
                client.upload_blob(name, data, overwrite=True, content_settings=settings)
        except AzureError as exc:
            raise StorageUnavailable(f"blob storage failed ({type(exc).__name__})") from exc

    def get(self, container: str, name: str) -> bytes:
        blob = self.service.get_blob_client(check_container(container), check_name(name))
        try:
            data: bytes = blob.download_blob().readall()
            return data
        except ResourceNotFoundError as exc:
            raise BlobNotFound("no such blob") from exc
        except AzureError as exc:
            raise StorageUnavailable(f"blob storage failed ({type(exc).__name__})") from exc

    def sha256(self, container: str, name: str) -> str:
        blob = self.service.get_blob_client(check_container(container), check_name(name))
        digest = hashlib.sha256()
        try:
            for chunk in blob.download_blob().chunks():
                digest.update(chunk)
        except ResourceNotFoundError as exc:
            raise BlobNotFound("no such blob") from exc
        except AzureError as exc:
            raise StorageUnavailable(f"blob storage failed ({type(exc).__name__})") from exc
        return digest.hexdigest()

    def delete(self, container: str, name: str) -> None:
        blob = self.service.get_blob_client(check_container(container), check_name(name))
        try:
            blob.delete_blob()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageUnavailable(f"blob storage failed ({type(exc).__name__})") from exc

    def list(self, container: str, prefix: str = "") -> list[str]:
        client = self.service.get_container_client(check_container(container))
        try:
            return sorted(b.name for b in client.list_blobs(name_starts_with=prefix or None))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StorageUnavailable(f"blob storage failed ({type(exc).__name__})") from exc

    def delete_container(self, container: str) -> None:
        try:
            self.service.delete_container(check_container(container))
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageUnavailable(f"blob storage failed ({type(exc).__name__})") from exc

    def download_url(self, container: str, name: str, *, expires_in: dt.timedelta,
                     filename: str) -> str:
        blob = self.service.get_blob_client(check_container(container), check_name(name))
        now = dt.datetime.now(dt.UTC)
        expiry = now + check_lifetime(expires_in)
        options: dict[str, Any] = {
            "account_name": self.service.account_name, "container_name": container,
            "blob_name": name, "permission": BlobSasPermissions(read=True),
            "expiry": expiry, "start": now - dt.timedelta(minutes=5),
            "content_disposition": f'attachment; filename="{filename}"'}
        key = getattr(self.service.credential, "account_key", None)
        try:
            if key:
                sas = generate_blob_sas(account_key=key, **options)
            else:
                delegation = self.service.get_user_delegation_key(now - dt.timedelta(minutes=5),
                                                                  expiry)
                sas = generate_blob_sas(user_delegation_key=delegation, **options)
        except AzureError as exc:
            raise StorageUnavailable(f"blob storage failed ({type(exc).__name__})") from exc
        return f"{blob.url}?{sas}"

"""Blob storage: one interface (``storage.base.Storage``), two backends.

``LocalStorage`` (``storage/local.py``, the default, files under ``STORAGE_LOCAL_ROOT``;
download links served by the API) and ``AzureBlobStorage`` (``storage/azure.py``). The
app builds one from its settings in ``api/storage.py``.
"""

"""Blob storage backends (local, Azure Blob). Not built yet."""

"""Secrets from Azure Key Vault, for settings the environment does not set.

In Azure, App Service's managed identity reads the vault (``AZURE_KEY_VAULT_URL``);
locally, secrets come from environment variables and no vault is contacted. There is
no local Key Vault emulator, so this module is tested at its seam: ``SecretSource``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

# setting -> secret name in the vault (Key Vault names allow letters, digits and dashes)
SECRET_SETTINGS = {
    "DATABASE_URL": "database-url",
    "DATABASE_APP_PASSWORD": "database-app-password",
    "AZURE_OPENAI_API_KEY": "azure-openai-api-key",
    "B2C_CONNECTOR_PASSWORD": "b2c-connector-password",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "applicationinsights-connection-string",
}


class SecretSource(Protocol):
    def get(self, name: str) -> str | None: ...


class KeyVaultSource:
    """Read secrets with azure-keyvault-secrets and DefaultAzureCredential."""

    def __init__(self, vault_url: str, client: Any = None) -> None:
        if client is None:
            from azure.identity import DefaultAzureCredential
            from azure.keyvault.secrets import SecretClient

            client = SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())
        self._client = client

    def get(self, name: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            value = self._client.get_secret(name).value
        except ResourceNotFoundError:
            return None
        return str(value) if value else None


def fill_missing(config: MutableMapping[str, Any], source: SecretSource) -> list[str]:
    """Fill settings the environment left empty from ``source``; return the names filled."""
    filled = []
    for setting, secret in SECRET_SETTINGS.items():
        if not config.get(setting):
            value = source.get(secret)
            if value:
                config[setting] = value
                filled.append(setting)
    return filled

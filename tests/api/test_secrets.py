"""Key Vault has no local stand-in: the secret source is tested at its seam."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from azure.core.exceptions import ResourceNotFoundError

from api import settings
from api.secrets import KeyVaultSource, fill_missing


class FakeVault:
    def __init__(self, secrets):
        self.secrets = secrets
        self.asked: list[str] = []

    def get_secret(self, name):
        self.asked.append(name)
        if name not in self.secrets:
            raise ResourceNotFoundError("not found")
        return SimpleNamespace(value=self.secrets[name])


def test_vault_fills_only_missing_settings():
    vault = FakeVault({"database-url": "postgresql://vault/db", "azure-openai-api-key": "k"})
    source = KeyVaultSource("https://example.vault.azure.net", client=vault)
    config = {"DATABASE_URL": "postgresql://env/db", "AZURE_OPENAI_API_KEY": None}
    filled = fill_missing(config, source)
    assert filled == ["AZURE_OPENAI_API_KEY"]
    assert config["DATABASE_URL"] == "postgresql://env/db"  # the environment wins
    assert config["AZURE_OPENAI_API_KEY"] == "k"
    assert "database-url" not in vault.asked  # set settings are not even looked up


def test_missing_secret_is_none():
    source = KeyVaultSource("https://example.vault.azure.net", client=FakeVault({}))
    assert source.get("b2c-connector-password") is None


def test_settings_load_uses_the_source(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    vault = FakeVault({"database-url": "postgresql://vault/db"})
    config = settings.load(secret_source=KeyVaultSource("https://v", client=vault))
    assert config["DATABASE_URL"] == "postgresql://vault/db"


@pytest.mark.parametrize("value", ["", None])
def test_empty_secret_is_ignored(value):
    vault = FakeVault({"database-url": value})
    config = {"DATABASE_URL": None}
    assert fill_missing(config, KeyVaultSource("https://v", client=vault)) == []

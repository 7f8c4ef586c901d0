"""Secrets from Azure Key Vault, for settings the environment does not set; rotation.

In Azure, App Service's managed identity reads the vault (``AZURE_KEY_VAULT_URL``,
``DefaultAzureCredential``); locally, secrets come from environment variables and no
vault is contacted. A setting the environment sets wins, except a rotating one the vault
also has: App Service's Key Vault references can be a day old, so the vault's current
value is taken (``vault_backed``).

Rotation without a restart (``Secrets``): a setting that came from the vault is read
through ``Secrets.get``, which re-reads it once its value is older than
``KEY_VAULT_REFRESH_MINUTES``, and ``Secrets.refresh`` re-reads it at once after an
authentication failure (at most once per ``MIN_REFRESH_SECONDS`` per setting, so a caller
with a wrong password cannot make us hammer the vault). Who re-reads what:

- the database passwords/URLs: every new pool connection takes the current value, and a
  connection refused for its password re-reads and retries once (``tenancy.database``);
- the Azure OpenAI key: the SDK asks for the current key on every request, and a 401
  re-reads it and retries once (``llm.gateway``);
- the B2C connector password: compared with the current value; a mismatch re-reads it.

The storage connection string, the storage signing key and the Application Insights
connection string are read at start-up only (docs/operations.md: restart after
rotating them). Values are never logged: log lines name the setting, never its value.
There is no local Key Vault emulator, so the vault is tested at the SDK's transport seam
(tests/api/test_secret_rotation.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, MutableMapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

# setting -> secret name in the vault (Key Vault names allow letters, digits and dashes)
SECRET_SETTINGS = {
    "DATABASE_URL": "database-url",
    "DATABASE_APP_URL": "database-app-url",
    "DATABASE_APP_PASSWORD": "database-app-password",
    "AZURE_OPENAI_API_KEY": "azure-openai-api-key",
    "B2C_CONNECTOR_PASSWORD": "b2c-connector-password",
    "AZURE_STORAGE_CONNECTION_STRING": "azure-storage-connection-string",
    "STORAGE_SIGNING_KEY": "storage-signing-key",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "applicationinsights-connection-string",
}
# Re-read while the app runs; the others only at start-up.
ROTATING = frozenset({"DATABASE_URL", "DATABASE_APP_URL", "DATABASE_APP_PASSWORD",
                      "AZURE_OPENAI_API_KEY", "B2C_CONNECTOR_PASSWORD"})
MIN_REFRESH_SECONDS = 30.0
EXTENSION = "clinai_secrets"
# The names of the settings that came from the vault (``load``); values stay in config.
FROM_VAULT_KEY = "KEY_VAULT_SETTINGS"


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


def vault_backed(config: MutableMapping[str, Any], source: SecretSource,
                 filled: Collection[str] = ()) -> list[str]:
    """Take the vault's current value for every rotating setting the environment set
    and the vault has; return their names.

    On App Service these settings are Key Vault references (``@Microsoft.KeyVault(...)``),
    which arrive as ordinary environment variables holding the secret's value when App
    Service last resolved it (it caches them for up to a day). The vault's own value is
    the newest: a process that starts after a rotation (the release step that sets the
    app role's password) must use it, never the stale copy.
    """
    backed = []
    for setting in sorted(ROTATING - set(filled)):
        if config.get(setting):
            value = source.get(SECRET_SETTINGS[setting])
            if value:
                config[setting] = value
                backed.append(setting)
    return backed


class Secrets:
    """The current values of the rotating settings that came from the vault."""

    def __init__(self, source: SecretSource | None, initial: Mapping[str, str], *,
                 max_age_seconds: float, clock: Callable[[], float] = time.monotonic,
                 min_refresh_seconds: float = MIN_REFRESH_SECONDS) -> None:
        self._source = source
        self._values = {k: v for k, v in initial.items() if k in ROTATING}
        now = clock()
        self._read_at = dict.fromkeys(self._values, now)  # last read (for max age)
        self._refreshed_at = dict.fromkeys(self._values, -float("inf"))  # last refresh
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def rotating(self, setting: str) -> bool:
        """Whether ``setting`` came from the vault and is re-read while the app runs."""
        return setting in self._values and self._source is not None

    def get(self, setting: str, default: str | None = None) -> str | None:
        """The current value: ``default`` (the start-up value) unless the setting came
        from the vault; re-read from the vault once the cached value is too old."""
        if not self.rotating(setting):
            return default
        if self._clock() - self._read_at[setting] >= self._max_age:
            with self._lock:
                if self._clock() - self._read_at[setting] >= self._max_age:  # not yet
                    self._reread(setting)
        return self._values[setting]

    def refresh(self, setting: str, used: str | None = None) -> bool:
        """Re-read after an authentication failure, unless the last such re-read was less
        than ``min_refresh_seconds`` ago; True when there is a value other than ``used``
        (the one that failed) to try: read now, or already read by another caller."""
        if not self.rotating(setting):
            return False
        with self._lock:
            if used is not None and self._values[setting] != used:
                return True  # another caller re-read it meanwhile
            now = self._clock()
            if now - self._refreshed_at[setting] < self._min_refresh:
                return False  # a storm of failures (or of wrong guesses) reads once
            self._refreshed_at[setting] = now
            return self._reread(setting)

    def _reread(self, setting: str) -> bool:
        assert self._source is not None
        self._read_at[setting] = self._clock()
        try:
            value = self._source.get(SECRET_SETTINGS[setting])
        except Exception as exc:  # the vault is down: keep serving the cached value
            log.warning("re-reading %s from Key Vault failed (%s); the cached value stays "
                        "in use", setting, type(exc).__name__)
            return False
        if not value or value == self._values[setting]:
            return False
        self._values[setting] = value
        log.info("%s was re-read from Key Vault: a new version is in use", setting)
        return True


def init_app(app: Any) -> Secrets:
    """Keep the vault's rotating settings current for this app (``app.extensions``)."""
    c = app.config
    secrets = Secrets(c.get("KEY_VAULT_SOURCE"),
                      {setting: c[setting] for setting in c.get(FROM_VAULT_KEY, ())},
                      max_age_seconds=60.0 * int(c["KEY_VAULT_REFRESH_MINUTES"]))
    app.extensions[EXTENSION] = secrets
    return secrets


def current_secrets(app: Any) -> Secrets:
    secrets: Secrets = app.extensions[EXTENSION]
    return secrets

"""Settings: defaults, then environment variables, then test overrides.

Every setting is documented in the README's configuration table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import click

DEFAULTS: dict[str, Any] = {
    "APP_ENV": "production",
    "DATABASE_URL": None,
    "DATABASE_APP_URL": None,
    "DATABASE_APP_PASSWORD": None,
    "DATABASE_OWNER_ROLE": "clinai_owner",
    "DATABASE_APP_ROLE": "clinai_app",
    "DATABASE_POOL_SIZE": 10,
    # A connection pooler in front of the app role's connections (DATABASE_APP_URL):
    # empty or "none" (direct), or "transaction" (PgBouncer in transaction mode, as Azure's
    # built-in one on port 6432). See docs/decisions/pooler.md.
    "DATABASE_APP_POOLER": None,
    "AUTH_OIDC_METADATA_URL": None,
    "AUTH_AUDIENCE": None,
    "AUTH_TENANT_CLAIM": "extension_tenant_id",
    "AUTH_ROLE_CLAIM": "extension_role",
    "AUTH_CLOCK_SKEW_SECONDS": 60,
    "B2C_CONNECTOR_USERNAME": None,
    "B2C_CONNECTOR_PASSWORD": None,
    "INVITATION_TTL_HOURS": 168,
    # § 630f(3) BGB: treatment records are kept 10 years after treatment ended (minimum).
    "RECORD_RETENTION_YEARS": 10,
    # Art. 15/20 exports stay downloadable this long, then `flask gdpr purge` deletes them.
    "EXPORT_RETENTION_DAYS": 30,
    "EXPORT_WORKERS": 2,  # threads per process that build exports
    "AZURE_OPENAI_ENDPOINT": None,
    "AZURE_OPENAI_API_KEY": None,
    "OPENAI_API_VERSION": "2024-10-21",
    "AZURE_OPENAI_CHAT_DEPLOYMENT": "gpt-4o-mini",
    "LLM_DEFAULT_MONTHLY_TOKEN_BUDGET": 2_000_000,
    "LLM_TENANT_REQUESTS_PER_MINUTE": 60,
    "LLM_TENANT_TOKENS_PER_MINUTE": 200_000,
    "LLM_TIMEOUT_SECONDS": 60,
    "LLM_MAX_ATTEMPTS": 3,
    # Versioned EUR prices per deployment (TOML or JSON); default: the checked-in
    # llm/prices.toml. Refused at start-up if invalid or without a price valid now.
    "LLM_PRICES_FILE": None,
    # Token subjects (``oid``, else ``sub``) of the platform's billing team, comma-separated:
    # they may read the cross-tenant usage summary (GET /api/v1/billing/usage). Empty:
    # nobody. Parsed into a frozenset by ``load``.
    "BILLING_PRINCIPALS": frozenset(),
    # `flask usage close --period M` is refused until month M's end plus this many hours
    # (settlements of calls that started in M can still arrive).
    "BILLING_GRACE_HOURS": 48,
    "LOG_LEVEL": "INFO",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": None,
    # Application Insights' cloud role name and role instance (default: App Service's
    # WEBSITE_INSTANCE_ID, else the host name), and the share of traces kept (0-1].
    "APPLICATIONINSIGHTS_ROLE_NAME": "clinai-api",
    "APPLICATIONINSIGHTS_ROLE_INSTANCE": None,
    "APPLICATIONINSIGHTS_SAMPLING_RATIO": 1.0,
    "AZURE_KEY_VAULT_URL": None,
    # Secrets read from Key Vault are re-read after this long (and at once after an
    # authentication failure), so a rotated secret is used without a restart.
    "KEY_VAULT_REFRESH_MINUTES": 10,
    "STORAGE_LOCAL_ROOT": None,  # default: <instance>/storage
    "STORAGE_SIGNING_KEY": None,  # hex; default: a key kept in <instance>
    "AZURE_STORAGE_ACCOUNT_URL": None,
    "AZURE_STORAGE_CONNECTION_STRING": None,
    # Bodies above 1 MiB are refused with 413 before they are parsed.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
}

_INT_SETTINGS = {
    "DATABASE_POOL_SIZE", "AUTH_CLOCK_SKEW_SECONDS", "INVITATION_TTL_HOURS", "MAX_CONTENT_LENGTH",
    "RECORD_RETENTION_YEARS", "EXPORT_RETENTION_DAYS", "EXPORT_WORKERS", "BILLING_GRACE_HOURS",
    "KEY_VAULT_REFRESH_MINUTES",
    "LLM_DEFAULT_MONTHLY_TOKEN_BUDGET", "LLM_TENANT_REQUESTS_PER_MINUTE",
    "LLM_TENANT_TOKENS_PER_MINUTE", "LLM_TIMEOUT_SECONDS", "LLM_MAX_ATTEMPTS",
}
_FLOAT_SETTINGS = {"APPLICATIONINSIGHTS_SAMPLING_RATIO"}
DEV_AUDIENCE = "clinai-dev-api"
# Environments where the in-process LLM simulator may stand in for Azure OpenAI.
DEV_ENVS = frozenset({"development", "test"})


class ConfigError(click.ClickException, RuntimeError):
    """The configuration cannot be served safely.

    A ``ClickException``, so that the ``flask`` CLI (which builds the app through
    ``wsgi.py`` before running any command) reports it as one line, ``Error: ...``, with
    exit status 1 instead of a traceback. Servers still refuse to start: the import of
    ``wsgi`` fails.
    """


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the settings that are set in ``environ``, typed."""
    values: dict[str, Any] = {}
    for key in DEFAULTS:
        raw = environ.get(key)
        if raw is None or raw == "":
            continue
        if key in _INT_SETTINGS:
            try:
                values[key] = int(raw)
            except ValueError as exc:
                raise ConfigError(f"{key} must be an integer") from exc
        elif key in _FLOAT_SETTINGS:
            try:
                values[key] = float(raw)
            except ValueError as exc:
                raise ConfigError(f"{key} must be a number") from exc
        else:
            values[key] = raw
    return values


def parse_principals(value: Any) -> frozenset[str]:
    """``BILLING_PRINCIPALS`` as a set of subjects: a comma-separated string (the
    environment) or an iterable of strings (test overrides); blanks around commas and
    empty entries are dropped."""
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else list(value)
    subjects = set()
    for item in items:
        if not isinstance(item, str):
            raise ConfigError("BILLING_PRINCIPALS must list token subjects (strings)")
        subject = item.strip()
        if not subject:
            continue
        if len(subject) > 255 or not subject.isprintable():
            raise ConfigError("BILLING_PRINCIPALS: each subject must be 1-255 printable "
                              "characters")
        subjects.add(subject)
    return frozenset(subjects)


POOLER_MODES = frozenset({"transaction"})


def pooler_mode(value: Any) -> str | None:
    """``DATABASE_APP_POOLER`` as ``None`` (no pooler: empty or ``none``) or a mode of
    ``POOLER_MODES``; ``ConfigError`` for anything else."""
    mode = str(value or "").strip().lower()
    if mode in ("", "none"):
        return None
    if mode not in POOLER_MODES:
        raise ConfigError("DATABASE_APP_POOLER must be empty, 'none' or 'transaction' "
                          f"(got {str(value)[:40]!r})")
    return mode


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    try:
        port = parsed.port or 5432
    except ValueError as exc:
        raise ConfigError("a database URL has an invalid port") from exc
    return (parsed.hostname or "").lower(), port


def _validate_pooler(config: Mapping[str, Any]) -> None:
    """With a transaction pooler, requests go through it (``DATABASE_APP_URL``) while
    ``DATABASE_URL`` must stay a direct connection: migrations, provisioning and the
    ``flask`` commands use session state (``SET ROLE``, session advisory locks) that a
    transaction pooler would hand to other clients."""
    if pooler_mode(config.get("DATABASE_APP_POOLER")) is None:
        return
    app_url = config.get("DATABASE_APP_URL")
    if not app_url:
        raise ConfigError("DATABASE_APP_POOLER=transaction needs DATABASE_APP_URL (the "
                          "pooler's address, e.g. port 6432); DATABASE_URL stays direct")
    if _address(app_url) == _address(config["DATABASE_URL"]):
        raise ConfigError("DATABASE_APP_POOLER=transaction: DATABASE_URL must be a direct "
                          "connection (port 5432), not the pooler DATABASE_APP_URL names")


def _secure_url(url: str) -> bool:
    parsed = urlparse(url)
    loopback = parsed.hostname in {"localhost", "127.0.0.1", "::1"}
    return parsed.scheme == "https" or (parsed.scheme == "http" and loopback)


def validate(config: Mapping[str, Any]) -> None:
    """Refuse configurations that would be unsafe or cannot work."""
    if not config.get("DATABASE_URL"):
        raise ConfigError("DATABASE_URL is not set")
    _validate_pooler(config)
    for key in ("AUTH_OIDC_METADATA_URL", "AZURE_OPENAI_ENDPOINT"):
        if config.get(key) and not _secure_url(config[key]):
            raise ConfigError(f"{key} must be https (plain http only on loopback)")
    metadata_url = config.get("AUTH_OIDC_METADATA_URL")
    if metadata_url:
        if not config.get("AUTH_AUDIENCE"):
            raise ConfigError("AUTH_AUDIENCE is required with AUTH_OIDC_METADATA_URL")
    elif config.get("APP_ENV") != "development":
        raise ConfigError(
            "AUTH_OIDC_METADATA_URL is not set; only APP_ENV=development may use the "
            "development token issuer"
        )
    if int(config.get("RECORD_RETENTION_YEARS", 10)) < 10:
        raise ConfigError("RECORD_RETENTION_YEARS must be at least 10 (§ 630f(3) BGB)")
    if not 1 <= int(config.get("EXPORT_RETENTION_DAYS", 30)) <= 365:
        raise ConfigError("EXPORT_RETENTION_DAYS must be between 1 and 365")
    if not 1 <= int(config.get("KEY_VAULT_REFRESH_MINUTES", 10)) <= 1440:
        raise ConfigError("KEY_VAULT_REFRESH_MINUTES must be between 1 and 1440")
    if not 0 <= int(config.get("BILLING_GRACE_HOURS", 48)) <= 24 * 31:
        raise ConfigError("BILLING_GRACE_HOURS must be between 0 and 744")
    if not 1 <= int(config.get("EXPORT_WORKERS", 2)) <= 16:
        raise ConfigError("EXPORT_WORKERS must be between 1 and 16")
    if not 0 < float(config.get("APPLICATIONINSIGHTS_SAMPLING_RATIO", 1.0)) <= 1:
        raise ConfigError("APPLICATIONINSIGHTS_SAMPLING_RATIO must be more than 0 and at most 1")
    if not config.get("AZURE_OPENAI_ENDPOINT") and config.get("APP_ENV") not in DEV_ENVS:
        raise ConfigError("AZURE_OPENAI_ENDPOINT is not set; the LLM simulator serves only "
                          f"APP_ENV in {sorted(DEV_ENVS)}")


def load(test_config: Mapping[str, Any] | None = None,
         secret_source: Any = None) -> dict[str, Any]:
    """Merge defaults, environment, Key Vault (for what is still unset) and overrides."""
    from api.secrets import FROM_VAULT_KEY, KeyVaultSource, fill_missing, vault_backed

    config = dict(DEFAULTS)
    config.update(from_environment(os.environ))
    if test_config:
        config.update(test_config)
    config["BILLING_PRINCIPALS"] = parse_principals(config.get("BILLING_PRINCIPALS"))
    vault_url = config.get("AZURE_KEY_VAULT_URL")
    if vault_url and urlparse(vault_url).scheme != "https":
        raise ConfigError("AZURE_KEY_VAULT_URL must be an https:// URL "
                          "(https://<vault>.vault.azure.net)")
    if secret_source is None and config.get("AZURE_KEY_VAULT_URL"):
        secret_source = KeyVaultSource(config["AZURE_KEY_VAULT_URL"])
    config[FROM_VAULT_KEY] = ()
    if secret_source is not None:
        filled = fill_missing(config, secret_source)
        config[FROM_VAULT_KEY] = tuple(filled + vault_backed(config, secret_source, filled))
        config["KEY_VAULT_SOURCE"] = secret_source
    return config

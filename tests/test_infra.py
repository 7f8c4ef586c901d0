"""infra/: the Bicep parses, and gives the web app every setting the app reads in production.

Offline: the templates are parsed with pycep (no Bicep compiler, no Azure). checkov's
security checks run apart, in CI (`scripts/checkov`). What only a deployment can show:
docs/operations.md, "What only Azure can verify".
"""

from __future__ import annotations

import importlib.util
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name
from pycep import BicepParser

from api.secrets import SECRET_SETTINGS
from api.settings import DEFAULTS

INFRA = Path(__file__).resolve().parent.parent / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault(SecretUri=${secretUris."

# Settings the app reads that production leaves to their defaults, or that only the local
# setup uses. A new setting in api/settings.py fails this test until it is provisioned
# (infra/modules/appservice.bicep) or listed here with the reason.
NOT_PROVISIONED = {
    "DATABASE_OWNER_ROLE": "the default (clinai_owner) is the NOLOGIN role `flask tenancy "
                           "upgrade` creates; no login uses its name",
    "DATABASE_POOL_SIZE": "the default 10 per worker gives 2 x 10 = 20 connections per "
                          "instance, within B1ms's 50 (and cheap behind PgBouncer)",
    "AUTH_CLOCK_SKEW_SECONDS": "the default 60 s suits B2C's tokens",
    "INVITATION_TTL_HOURS": "product default (7 days)",
    "RECORD_RETENTION_YEARS": "the default is the legal minimum (10, § 630f(3) BGB); a "
                              "practice sets a longer period through the API",
    "EXPORT_RETENTION_DAYS": "product default (30 days)",
    "EXPORT_WORKERS": "the default 2 threads per worker fits the B1 plan's single core",
    "AZURE_OPENAI_API_KEY": "keyless: the account has local (key) auth disabled; the web "
                            "app's identity has Cognitive Services OpenAI User",
    "OPENAI_API_VERSION": "the default is the API version the code was tested with",
    "LLM_DEFAULT_MONTHLY_TOKEN_BUDGET": "product default; per practice with `flask tenancy "
                                        "set-budget`",
    "LLM_TENANT_REQUESTS_PER_MINUTE": "product default",
    "LLM_TENANT_TOKENS_PER_MINUTE": "product default",
    "LLM_TIMEOUT_SECONDS": "product default",
    "LLM_MAX_ATTEMPTS": "product default",
    "LLM_PRICES_FILE": "the checked-in llm/prices.toml is deployed with the code",
    "BILLING_GRACE_HOURS": "product default (48 h)",
    "APPLICATIONINSIGHTS_ROLE_NAME": "the default clinai-api is the role name the alerts "
                                     "and dashboards expect",
    "APPLICATIONINSIGHTS_ROLE_INSTANCE": "the default is App Service's WEBSITE_INSTANCE_ID",
    "APPLICATIONINSIGHTS_SAMPLING_RATIO": "the default 1.0 keeps every trace (the MVP's "
                                          "volume is small)",
    "KEY_VAULT_REFRESH_MINUTES": "the default 10 min: a rotated secret is used within 10 "
                                 "minutes, at once after a refused login",
    "LOG_LEVEL": "the default INFO",
    "STORAGE_LOCAL_ROOT": "local backend only; AZURE_STORAGE_ACCOUNT_URL selects Azure Blob",
    "STORAGE_SIGNING_KEY": "signs the local backend's links only; Azure Blob downloads are "
                           "user-delegation SAS",
    "AZURE_STORAGE_CONNECTION_STRING": "keyless: shared-key access is disabled on the "
                                       "account; the identity has blob roles",
    "MAX_CONTENT_LENGTH": "the default 1 MiB",
}

# App settings that are not in api/settings.py, with who reads them.
OTHER_SETTINGS = {
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "App Service: install requirements.txt at deployment",
    "WEBSITES_CONTAINER_START_TIME_LIMIT": "App Service: time for migrations before "
                                           "gunicorn listens (scripts/appservice-start.sh)",
    "GUNICORN_CONTROL_SOCKET": "gunicorn.conf.py: 'off', no local control socket on App Service",
}

# Settings outside api.secrets.SECRET_SETTINGS whose values carry a credential.
ALSO_SECRET = {
    "DATABASE_APP_URL": "the app role's password is part of the URL",
}


@cache
def parse(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = BicepParser().parse(file_path=path)
    return result


def module(name: str) -> dict[str, Any]:
    return parse(INFRA / "modules" / f"{name}.bicep")


def resources_of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template.get("resources", {}).items()
            if body["type"] == type_}


def web_app() -> dict[str, Any]:
    apps = [body["config"] for path in BICEP_FILES
            for body in resources_of_type(parse(path), "Microsoft.Web/sites").values()]
    assert len(apps) == 1, "one web app"
    return apps[0]


def app_settings() -> dict[str, Any]:
    entries = web_app()["properties"]["siteConfig"]["appSettings"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), "an app setting is listed twice"
    return {entry["name"]: entry["value"] for entry in entries}


def accessor_root(expression: Any) -> str:
    """``databaseUrl.properties.secretUri`` -> ``databaseUrl``."""
    assert isinstance(expression, dict) and "operator" in expression, expression
    root = expression["operator"]["operands"]["operand_1"]
    assert isinstance(root, str)
    return root


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    template = parse(path)
    assert template.get("resources") or template.get("modules")


def test_main_uses_every_module():
    used = {body["detail"]["path"] for body in parse(INFRA / "main.bicep")["modules"].values()}
    on_disk = {f"modules/{path.name}" for path in (INFRA / "modules").glob("*.bicep")}
    assert used == on_disk


def test_the_exclusion_lists_name_real_settings():
    assert set(NOT_PROVISIONED) <= set(DEFAULTS)
    assert not set(NOT_PROVISIONED) & set(OTHER_SETTINGS)


def test_every_production_setting_is_provisioned():
    provisioned = set(app_settings())
    needed = set(DEFAULTS) - set(NOT_PROVISIONED)
    assert sorted(needed - provisioned) == [], "provision these or list them in NOT_PROVISIONED"
    assert sorted(set(NOT_PROVISIONED) & provisioned) == [], "provisioned yet listed as not"


def test_every_app_setting_is_read_by_someone():
    unknown = set(app_settings()) - set(DEFAULTS) - set(OTHER_SETTINGS)
    assert sorted(unknown) == [], "a typo, or a setting nobody reads"


def test_secrets_are_key_vault_references_to_the_secrets_the_app_reads():
    settings = app_settings()
    uris = module("secrets")["outputs"]["uris"]["value"]
    vault_secrets = module("secrets")["resources"]
    secret_names = dict(SECRET_SETTINGS)
    secret_names.update({setting: None for setting in ALSO_SECRET})
    for setting, secret_name in secret_names.items():
        if setting in NOT_PROVISIONED:
            continue
        value = settings[setting]
        assert value == f"{KEY_VAULT_REFERENCE}{setting}}})", setting
        # The reference and api/secrets.py's own re-read name the same vault secret.
        secret = vault_secrets[accessor_root(uris[setting])]
        assert secret["type"] == "Microsoft.KeyVault/vaults/secrets"
        if secret_name is not None:
            assert secret["config"]["name"] == secret_name, setting


def test_no_other_setting_is_a_key_vault_reference_or_a_secure_parameter():
    secure = {name for path in BICEP_FILES
              for name, param in parse(path).get("parameters", {}).items()
              if any(d["type"] == "secure" for d in param["decorators"])}
    assert secure, "the passwords are @secure() parameters"
    for setting, value in app_settings().items():
        if setting in SECRET_SETTINGS or setting in ALSO_SECRET:
            continue
        assert value not in secure, setting
        assert not (isinstance(value, str) and "KeyVault" in value), setting
    # No secure parameter reaches the web app's module in plain text either.
    main = parse(INFRA / "main.bicep")
    api_module = next(body for body in main["modules"].values()
                      if body["detail"]["path"] == "modules/appservice.bicep")
    for param, value in api_module["config"]["params"].items():
        assert not (isinstance(value, str) and value in secure), param


def test_the_web_app_runs_the_app_as_designed():
    app = web_app()
    site = app["properties"]["siteConfig"]
    assert app["identity"] == {"type": "SystemAssigned"}
    assert app["properties"]["httpsOnly"] is True
    assert site["linuxFxVersion"] == "PYTHON|3.11"
    assert site["healthCheckPath"] == "/readyz"
    assert site["minTlsVersion"] == "1.2"
    assert site["ftpsState"] == "Disabled"
    assert app_settings()["APP_ENV"] == "production"
    # The startup command runs the release step, then hands the process to gunicorn.
    command = site["appCommandLine"].split()
    assert command[0] == "bash"
    script = (INFRA.parent / command[1]).read_text()
    assert script.rstrip().splitlines()[-1].strip() == "exec gunicorn wsgi:app"
    assert "python scripts/release.py" in script.splitlines()
    assert '"flask", "tenancy", "upgrade"' in (INFRA.parent / "scripts" / "release.py").read_text()


def test_the_app_role_goes_through_pgbouncer_where_the_server_has_it():
    postgres = module("postgres")
    parameters = {body["config"]["config"]["name"]: body["config"]
                  for body in resources_of_type(
                      postgres, "Microsoft.DBforPostgreSQL/flexibleServers/configurations",
                  ).values() if "condition" in body["config"]}
    assert {name: p["config"]["properties"]["value"] for name, p in parameters.items()} == {
        "pgbouncer.enabled": "true",
        "pgbouncer.pool_mode": "TRANSACTION",
        "pgbouncer.default_pool_size": "40",
    }
    assert {p["condition"] for p in parameters.values()} == {"pgBouncerEnabled"}
    port = postgres["outputs"]["appPort"]["value"]["operator"]
    assert port["operands"] == {"condition": "pgBouncerEnabled", "true_value": 6432,
                                "false_value": 5432}
    pooler = postgres["outputs"]["appPooler"]["value"]["operator"]
    assert pooler["operands"] == {"condition": "pgBouncerEnabled", "true_value": "transaction",
                                  "false_value": ""}
    api_module = next(body for body in parse(INFRA / "main.bicep")["modules"].values()
                      if body["detail"]["path"] == "modules/appservice.bicep")
    assert accessor_root(api_module["config"]["params"]["databaseAppPooler"]) == "postgres"
    assert app_settings()["DATABASE_APP_POOLER"] == "databaseAppPooler"
    # Migrations keep the direct port; the app role's URL takes the pooler's.
    values = {name: body["config"]["properties"]["value"]
              for name, body in module("secrets")["resources"].items()
              if body["type"] == "Microsoft.KeyVault/vaults/secrets"}
    assert ":5432/" in values["databaseUrl"]
    assert ":${appPort}/" in values["databaseAppUrl"]
    extensions = next(body["config"] for body in resources_of_type(
        postgres, "Microsoft.DBforPostgreSQL/flexibleServers/configurations").values()
        if body["config"].get("name") == "azure.extensions")
    assert set(extensions["properties"]["value"].split(",")) == {"uuid-ossp", "pgcrypto"}


def test_the_identity_has_exactly_the_four_roles():
    roles = module("roles")
    assert set(roles["variables"]["roles"]["value"].values()) == {
        "4633458b-17de-408a-b874-0445c86b69e6",  # Key Vault Secrets User
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe",  # Storage Blob Data Contributor
        "db58b8e5-c6ad-4a2a-8342-4190687cbf4a",  # Storage Blob Delegator
        "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",  # Cognitive Services OpenAI User
    }
    assert len(resources_of_type(roles, "Microsoft.Authorization/roleAssignments")) == 4


def test_app_service_installs_the_locked_runtime_dependencies_only():
    spec = importlib.util.spec_from_file_location(
        "production_requirements", INFRA.parent / "scripts" / "production_requirements.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    project = tomllib.loads((INFRA.parent / "pyproject.toml").read_text())["project"]
    pins = {canonicalize_name(name): version
            for name, version in script.runtime_closure(project["dependencies"]).items()}
    locked = dict(line.strip().split("==") for line in
                  (INFRA.parent / "requirements.lock").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    locked = {canonicalize_name(name): version for name, version in locked.items()}
    assert {name: locked.get(name) for name in pins} == pins
    assert {"flask", "gunicorn", "psycopg-binary", "azure-identity"} <= set(pins)
    dev = {canonicalize_name(r.split("==")[0].split("[")[0])
           for r in project["optional-dependencies"]["dev"]}
    assert not dev & set(pins)

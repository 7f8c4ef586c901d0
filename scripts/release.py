"""The release step App Service runs before gunicorn (scripts/appservice-start.sh).

Instances that start together take turns: the step holds a PostgreSQL advisory lock on a
connection of its own (released when that closes, also if this process dies). Then:

- if the database is ahead of this code (a public or tenant revision this release does
  not know), this is a rollback to an earlier release: it migrates nothing, says so and
  exits 0; the earlier release runs on the newer schema (migrations only add, see
  docs/operations.md, "Roll back");
- otherwise it runs ``flask tenancy upgrade`` (roles, the app role's password, ``public``,
  every tenant schema) and exits with its status.

Settings come from the environment, else Key Vault, like the app's (``api.settings.load``).
"""

from __future__ import annotations

import subprocess
import sys

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from api.settings import ConfigError, load
from tenancy.database import DatabaseConfig, create_owner_engine
from tenancy.migrate import PUBLIC_SCRIPTS, tenant_script_directory, tenant_versions

# pg_advisory_lock key ("clinair" in ASCII); no other code takes it.
RELEASE_LOCK = 0x636C696E616972
UPGRADE = [sys.executable, "-m", "flask", "tenancy", "upgrade"]


def log(message: str) -> None:
    print(f"release: {message}", file=sys.stderr, flush=True)


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _revisions(directory: ScriptDirectory) -> set[str]:
    return {script.revision for script in directory.walk_revisions()}


def _public_script_directory() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(PUBLIC_SCRIPTS))
    cfg.set_main_option("version_locations", str(PUBLIC_SCRIPTS / "versions"))
    cfg.set_main_option("path_separator", "space")
    return ScriptDirectory.from_config(cfg)


def database_ahead(config: DatabaseConfig) -> list[str]:
    """Return the revisions in the database that this code does not know (sorted)."""
    with psycopg.connect(_conninfo(config.admin_url), connect_timeout=30) as conn:
        migrated = conn.execute(
            "SELECT to_regclass('public.alembic_version') IS NOT NULL"
            " AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)",
            (config.owner_role,),
        ).fetchone()
    if not (migrated and migrated[0]):
        return []  # a new database: nothing can be ahead
    engine = create_owner_engine(config, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            public = set(conn.scalars(text("SELECT version_num FROM public.alembic_version")))
            tenants = {v for v in tenant_versions(conn).values() if v is not None}
    finally:
        engine.dispose()
    unknown = (public - _revisions(_public_script_directory())) | (
        tenants - _revisions(tenant_script_directory()))
    return sorted(unknown)


def main() -> int:
    settings = load()
    if not settings.get("DATABASE_URL"):
        raise ConfigError("DATABASE_URL is not set")
    config = DatabaseConfig(admin_url=settings["DATABASE_URL"],
                            owner_role=settings["DATABASE_OWNER_ROLE"],
                            app_role=settings["DATABASE_APP_ROLE"])
    with psycopg.connect(_conninfo(config.admin_url), autocommit=True,
                         connect_timeout=30) as lock:
        log("waiting for the release lock")
        lock.execute("SELECT pg_advisory_lock(%s)", (RELEASE_LOCK,))
        unknown = database_ahead(config)
        if unknown:
            log(f"the database is ahead of this release (revisions {', '.join(unknown)} are "
                "not in this code): a rollback; nothing migrated")
            return 0
        log("flask tenancy upgrade")
        # A fixed command line (this interpreter's flask), no input in it.
        return subprocess.call(UPGRADE)  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())

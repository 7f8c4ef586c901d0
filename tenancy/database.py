"""Database URLs, roles and engines.

``DATABASE_URL`` carries an administrative login (Azure's server admin). From it we
derive two identities:

- the *owner* role (NOLOGIN): owns every schema and table. Migrations and tenant
  provisioning connect with the admin login and ``SET ROLE`` to it, so objects are
  owned by the owner role, never by a person's login.
- the *app* role (LOGIN, NOSUPERUSER, NOBYPASSRLS, owns nothing, DML only): what
  requests connect as.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from tenancy.errors import TenancyError
from tenancy.fastpath import install_statement_rewrite, restore_implicit_transactions


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """Where the database is and which roles to use."""

    admin_url: str
    app_url: str | None = None
    app_password: str | None = None
    owner_role: str = "clinai_owner"
    app_role: str = "clinai_app"
    password_file: Path | None = None
    pool_size: int = 10

    def resolved_app_password(self) -> str | None:
        if self.app_password:
            return self.app_password
        if self.password_file is not None and self.password_file.exists():
            return self.password_file.read_text().strip()
        return None


def sqlalchemy_url(url: str) -> URL:
    """Return ``url`` as a SQLAlchemy URL that uses psycopg 3."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise TenancyError("DATABASE_URL must be a postgresql:// URL", code="bad_database_url")
    return parsed.set(drivername="postgresql+psycopg")


def app_url(config: DatabaseConfig) -> URL:
    """Return the URL requests connect with: ``DATABASE_APP_URL`` or derived from the admin's."""
    if config.app_url:
        return sqlalchemy_url(config.app_url)
    return sqlalchemy_url(config.admin_url).set(
        username=config.app_role, password=config.resolved_app_password()
    )


def create_app_engine(config: DatabaseConfig, **kwargs: Any) -> Engine:
    """Create the pooled engine requests use."""
    options: dict[str, Any] = {
        # Bound parameters carry clinical text: keep them out of exception messages.
        "hide_parameters": True,
        "pool_size": config.pool_size,
        "max_overflow": 0,
        "pool_pre_ping": False,
        "pool_timeout": 10,
    }
    options.update(kwargs)
    engine = create_engine(app_url(config), **options)

    # The request path's tricks (BEGIN with the tenant context; one statement rewritten
    # per execution): ``tenancy/fastpath.py``.
    restore_implicit_transactions(engine)
    install_statement_rewrite(engine)
    return engine


def create_owner_engine(config: DatabaseConfig, **kwargs: Any) -> Engine:
    """Create an engine whose connections act as the owner role (provisioning, migrations)."""
    options: dict[str, Any] = {"hide_parameters": True} | (
        dict(kwargs) if "poolclass" in kwargs else {"pool_size": 2, "max_overflow": 2, **kwargs}
    )
    engine = create_engine(sqlalchemy_url(config.admin_url), **options)
    owner = config.owner_role

    @event.listens_for(engine, "connect")
    def _become_owner(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET ROLE "{owner}"')
        dbapi_conn.commit()

    return engine


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise TenancyError(f"invalid role name {identifier!r}", code="bad_role_name")
    return f'"{identifier}"'


def ensure_roles(config: DatabaseConfig) -> str | None:
    """Create the owner and app roles if missing and (re)set the app password.

    Return the generated password when one had to be generated (and was stored in
    ``config.password_file``), else None.
    """
    owner, app = _quote(config.owner_role), _quote(config.app_role)
    password = config.app_password
    generated = None
    if not password:
        password = config.resolved_app_password()
        if not password:
            password = generated = secrets.token_urlsafe(32)
            if config.password_file is not None:
                config.password_file.parent.mkdir(parents=True, exist_ok=True)
                config.password_file.touch(mode=0o600)
                config.password_file.write_text(password)
    engine = create_engine(sqlalchemy_url(config.admin_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            existing = set(
                conn.scalars(
                    text("SELECT rolname FROM pg_roles WHERE rolname IN (:o, :a)"),
                    {"o": config.owner_role, "a": config.app_role},
                )
            )
            if config.owner_role not in existing:
                conn.execute(text(f"CREATE ROLE {owner} NOLOGIN"))
            if config.app_role not in existing:
                conn.execute(text(f"CREATE ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                                  "NOCREATEROLE"))
            # The password is a literal in DDL; quote_literal keeps it one.
            quoted = conn.scalar(text("SELECT quote_literal(:p)"), {"p": password})
            conn.execute(text(f"ALTER ROLE {app} WITH LOGIN PASSWORD {quoted}"))
            # The admin login must be able to SET ROLE to the owner to act as it.
            conn.execute(text(f"GRANT {owner} TO CURRENT_USER"))
            db = conn.scalar(text("SELECT current_database()"))
            conn.execute(text(f'GRANT CONNECT, CREATE ON DATABASE "{db}" TO {owner}'))
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{db}" TO {app}'))
            conn.execute(text(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}"))
            conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {app}"))
            conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    finally:
        engine.dispose()
    return generated
